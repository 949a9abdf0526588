"""export_images: materialise the raw shards as an ImageFolder tree (to upload to Visual Layer, or browse).

Inputs:  ``--raw`` (data/raw); ``--labels`` (optional CSV image_id, label, e.g. data/noise/train_labels.csv:
         export only those images, under the folders of those labels: the noisy dataset for Visual Layer).
Output:  ``--out`` DIR with ``<split>/<class_id>/<file_name>``, bytes as stored.
Not a DVC stage by default (the tree is the 1.3M small files that the shards exist to avoid).
"""

from __future__ import annotations

import argparse

from vlclean import cli
from vlclean.datasets import RawDataset
from vlclean.datasets.raw import export_image_folder
from vlclean.errors import SchemaError
from vlclean.storage import read_csv


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--out", required=True)
    p.add_argument("--splits", default="train,test", help="comma-separated splits to export")
    p.add_argument("--valid_only", action="store_true", help="skip images that failed to decode")
    p.add_argument("--labels", default=None, help="CSV image_id,label: export these images under these labels")

    def body(args: argparse.Namespace) -> int:
        labels = None
        if args.labels:
            frame = read_csv(args.labels)
            missing = [c for c in ("image_id", "label") if c not in frame.columns]
            if missing:
                raise SchemaError(f"{args.labels}: column(s) {missing} missing; columns are {list(frame.columns)}")
            labels = dict(zip(frame["image_id"].astype(str), frame["label"].astype(int)))
        n = export_image_folder(RawDataset.open(args.raw), args.out, splits=args.splits.split(","),
                                valid_only=args.valid_only, labels=labels)
        print(f"export_images: wrote {n} images to {args.out}")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
