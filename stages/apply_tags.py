"""apply_tags: tag rules + manual reviews -> one decision per image, and a review site of the flagged images.

Inputs:  ``--ingested`` (data/vl_ingested from ingest_vl), ``--raw`` (index + thumbnails), ``--reviews``
         (data/reviews/*.csv: file_name, tag, action, new_label, reviewer, note), params ``base``,
         ``apply_tags`` (taxonomy, rule sets, the active rule set).
Outputs: ``--output`` (data/manifests/<dataset>_tagged_manifest.csv: one row per dataset image),
         ``--html`` (data/manifests/<dataset>_review/: index.html and pages of at most 1,000 flagged
         images and 16 MB each), ``--conflicts`` (reviewers who disagree), ``--metrics``, ``--plots``.
Standalone, without DVC or images (one row per exported image; the site goes to ``--html`` or
``<output stem>_review/``):
         ``python -m stages.apply_tags --vl_export PATH --dataset imagenet1k --output tagged.csv --generate_html``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from vlclean import cli, tag_manifest
from vlclean.datasets import RawDataset
from vlclean.params import ApplyTagsParams, load_params
from vlclean.reporting import bar_plot
from vlclean.storage import scratch_dir, write_csv, write_json
from vlclean.vl_ingest import extract_images, read_export
from vlclean.vl_ingest.limits import IngestLimits


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--ingested", default="data/vl_ingested")
    p.add_argument("--reviews", default="data/reviews")
    p.add_argument("--output", default=None)
    p.add_argument("--html", default=None, help="folder of the review site (index.html and pages)")
    p.add_argument("--conflicts", default=None)
    p.add_argument("--metrics", default=None)
    p.add_argument("--plots", default=None)
    p.add_argument("--policy", default=None, help="write the policy in force (rules, tags, buckets) as JSON")
    p.add_argument("--vl_export", default=None, help="standalone: read this export directly (no dataset index)")
    p.add_argument("--dataset", default=None, help="standalone: dataset name (default params base.dataset)")
    p.add_argument("--generate_html", action="store_true", help="standalone: also write the review site")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params, missing_ok=bool(args.vl_export))
        dataset = tag_manifest.check_dataset_name(args.dataset or every.base.dataset)
        params = every.apply_tags
        output = Path(args.output or f"data/manifests/{dataset}_tagged_manifest.csv")
        if args.vl_export:
            return standalone(Path(args.vl_export), dataset, output, args, params,
                              IngestLimits(**every.ingest_vl.limits.model_dump()))
        raw = RawDataset.open(args.raw)
        index, class_names = raw.index(), list(raw.classes()["class_name"])
        media = pd.read_parquet(Path(args.ingested) / "media.parquet")
        issues = pd.read_parquet(Path(args.ingested) / "issues.parquet")
        issues = issues[issues["image_id"] != ""].assign(key=lambda f: f["image_id"])
        images = tag_manifest.images_from_index(index, media)
        reviews = tag_manifest.read_reviews(Path(args.reviews), params.taxonomy, class_names,
                                            list(images["review_name"]))
        manifest, conflicts = tag_manifest.tag_images(images, issues, params.rules, params.taxonomy, reviews)
        write_csv(output, manifest)
        if args.policy:
            write_json(args.policy, params.record())
        if args.conflicts:
            write_csv(args.conflicts, conflicts)
        if args.html:
            ids = tag_manifest.flagged(manifest)["image_id"]
            tag_manifest.write_review(args.html, manifest, raw.iter_selected_images(ids), params.taxonomy, class_names,
                                      f"{dataset}: review")
        metrics: dict = {}
        if args.metrics and args.plots:
            metrics, frame = tag_manifest.tag_metrics(manifest)
            write_json(args.metrics, metrics)
            bar_plot(frame, x="label", y="images", csv_path=Path(args.plots) / "tags_actions.csv",
                     png_path=Path(args.plots) / "tags_actions.png", title="Tags and actions", horizontal=True)
        print(f"apply_tags: {metrics.get('actions', manifest['action'].value_counts().to_dict())}; "
              f"{len(reviews)} review row(s), {len(conflicts)} conflict(s)")
        return 0

    return cli.run(body, p, argv)


def standalone(export_path: Path, dataset: str, output: Path, args: argparse.Namespace,
               params: ApplyTagsParams, limits: IngestLimits) -> int:
    """One row per exported image; thumbnails from the export's images when it has them."""
    site = tag_manifest.site_folder(output, args.html) if args.generate_html else None
    export = read_export(export_path, progress=True, limits=limits)
    images = tag_manifest.images_from_export(export)
    issues = export.issues.assign(key=lambda f: f["media_key"])
    manifest, _ = tag_manifest.tag_images(images, issues, params.rules, params.taxonomy, None)
    write_csv(output, tag_manifest.standalone_table(manifest))
    if site is not None:
        manifest = manifest.assign(class_name=manifest["label"].fillna(""))
        class_names = sorted({str(x) for x in manifest["class_name"] if x})
        with scratch_dir("vl_images_") as tmp:
            has_images = export.images_dir is not None or export.images_zip is not None
            folder = extract_images(export, tmp, limits=limits) if has_images else None  # else placeholders
            tag_manifest.write_review(site, manifest, tag_manifest.standalone_images(manifest, folder),
                                      params.taxonomy, class_names, f"{dataset}: review")
    print(f"apply_tags: {len(manifest)} exported images -> {output}" + (f" and {site}/index.html" if site else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
