"""ingest_vl: read Visual Layer export(s) of any supported format and match them to the dataset.

Inputs:  params ``ingest_vl.export`` (one path or a list; empty: our analyze stage's export
         ``data/vl/<dataset>_vl_export.json``), ``--raw`` (the dataset index).
Outputs: ``--out`` (data/vl_ingested: media.parquet, issues.parquet, match_report.csv listing every
         unmatched or ambiguous item), ``--metrics`` (formats, issue counts, match counts).
Formats: platform metadata.json / ZIP / metadata.parquet, vl-datasets CSV, Hub enriched parquet,
fastdup folder (see vlclean/vl_ingest/, one module per format).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlclean import cli, schema
from vlclean.datasets import RawDataset
from vlclean.params import load_params
from vlclean.storage import atomic_dir, write_csv, write_json, write_parquet
from vlclean.vl_ingest import match_report, match_to_index, read_export
from vlclean.vl_ingest.limits import IngestLimits


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--export", action="append", default=None, help="override ingest_vl.export (repeatable)")
    p.add_argument("--out", default="data/vl_ingested")
    p.add_argument("--metrics", default="metrics/ingest_vl.json")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params)
        base, params = every.base, every.ingest_vl
        paths = args.export or params.export or [f"data/vl/{base.dataset}_vl_export.json"]
        index = RawDataset.open(args.raw).index()
        limits = IngestLimits(**params.limits.model_dump())
        export = match_to_index(read_export(paths, progress=True, limits=limits), index,
                                dataset_prefixes=params.dataset_prefixes)
        report = match_report(export)
        with atomic_dir(args.out) as tmp:
            write_parquet(tmp / "media.parquet", schema.to_arrow(export.media, schema.VL_MEDIA, "vl_media"))
            write_parquet(tmp / "issues.parquet", schema.to_arrow(export.issues, schema.VL_ISSUES, "vl_issues"))
            write_csv(tmp / "match_report.csv", report)
        media, issues = export.media, export.issues
        mentioned = set(media.loc[media["image_id"] != "", "image_id"])
        metrics = {
            "exports": [str(x) for x in paths],
            "media_items": len(media),
            "issues": len(issues),
            "issue_types": {k: int(v) for k, v in issues["issue_type"].value_counts().sort_index().items()},
            "match": {k: int(v) for k, v in media["match"].value_counts().sort_index().items()},
            "unmatched_or_ambiguous": int(len(report)),
            "dataset_images": len(index),
            "dataset_images_not_in_export": int(len(index) - len(mentioned & set(index["image_id"]))),
            "formats": export.stats.get("formats", {}),
        }
        write_json(args.metrics, metrics)
        print(f"ingest_vl: {len(media)} media items, {len(issues)} issues from {len(paths)} export(s); "
              f"match {metrics['match']}; {len(report)} unmatched/ambiguous listed in {Path(args.out) / 'match_report.csv'}")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
