"""export_images: materialise the raw shards as an ImageFolder tree (to upload to Visual Layer, or browse).

Inputs:  ``--raw`` (data/raw).  Output: ``--out`` DIR with ``<split>/<class_id>/<file_name>``, bytes as stored.
Not a DVC stage by default (the tree is the 1.3M small files that the shards exist to avoid).
"""

from __future__ import annotations

import argparse

from vlclean import cli
from vlclean.datasets import RawDataset
from vlclean.datasets.raw import export_image_folder


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--out", required=True)
    p.add_argument("--splits", default="train,test", help="comma-separated splits to export")
    p.add_argument("--valid_only", action="store_true", help="skip images that failed to decode")

    def body(args: argparse.Namespace) -> int:
        n = export_image_folder(RawDataset.open(args.raw), args.out, splits=args.splits.split(","),
                                valid_only=args.valid_only)
        print(f"export_images: wrote {n} images to {args.out}")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
