"""apply_tags: tag rules + manual reviews -> one decision per image, and an HTML review page.

Inputs:  ``--ingested`` (data/vl_ingested from ingest_vl), ``--raw`` (index + thumbnails), ``--reviews``
         (data/reviews/*.csv: file_name, tag, action, new_label, reviewer, note), params ``base``,
         ``apply_tags`` (taxonomy, rule sets, the active rule set).
Outputs: ``--output`` (data/manifests/<dataset>_tagged_manifest.csv: one row per dataset image),
         ``--html`` (self-contained review page of the flagged images), ``--conflicts`` (reviewers
         who disagree), ``--metrics`` (counts per tag / action / split), ``--plots``.
Standalone, without DVC or images (one row per exported image):
         ``python -m stages.apply_tags --vl_export PATH --dataset imagenet1k --output tagged.csv --generate_html``
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vlclean import cli
from vlclean.config import from_dict, load_base, read_params_file
from vlclean.datasets import RawDataset, folder_paths
from vlclean.errors import ExportFormatError, ParamsError
from vlclean.reporting import bar_plot
from vlclean.review import REVIEW_COLUMNS, read_reviews_csv, render_review_page, safe_thumbnail, write_review_page
from vlclean.storage import write_csv, write_json
from vlclean.tagging import MANIFEST_COLUMNS, Rule, TagDef, apply_reviews, decide, validate_rules
from vlclean.vl_ingest import extract_images, read_export


@dataclass(frozen=True)
class ApplyTagsParams:
    taxonomy: dict[str, TagDef] = field(default_factory=dict)
    rule_set: str = "default"
    rule_sets: dict[str, list[Rule]] = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        if self.rule_set not in self.rule_sets:
            raise ParamsError(f"params key '{prefix}.rule_set': {self.rule_set!r} is not one of {sorted(self.rule_sets)}")
        for name, rules in self.rule_sets.items():
            validate_rules(rules, self.taxonomy, f"{prefix}.rule_sets.{name}")

    @property
    def rules(self) -> list[Rule]:
        return self.rule_sets[self.rule_set]


def _issue_text(issues: pd.DataFrame) -> pd.Series:
    """'type:confidence;...' per key (one entry per issue type, its highest confidence)."""
    if issues.empty:
        return pd.Series(dtype=str)
    best = issues.groupby(["key", "issue_type"])["confidence"].max().reset_index()
    best["txt"] = [t if pd.isna(c) else f"{t}:{c:.2f}" for t, c in zip(best["issue_type"], best["confidence"])]
    return best.groupby("key")["txt"].agg(";".join)


def review_names(index: pd.DataFrame) -> pd.Series:
    """The name reviews use for each image: its file name, or ``split/class_id/file_name`` where the file
    name is not unique in the dataset (an ImageFolder tree may repeat names across folders)."""
    names = index["file_name"].astype(str)
    return names.where(~names.duplicated(keep=False), folder_paths(index))


def _images_from_index(index: pd.DataFrame, media: pd.DataFrame) -> pd.DataFrame:
    matched = media[media["image_id"] != ""]
    agg = matched.groupby("image_id").agg(
        uniqueness_score=("uniqueness_score", "min"), cluster_id=("cluster_id", "first"),
        user_tags=("user_tags", lambda s: ";".join(sorted({t for x in s for t in str(x).split(";") if t}))),
        label_source=("label_source", "first"), match=("match", "first"),
    )
    images = index[["image_id", "file_name", "split", "label", "class_name"]].merge(
        agg, left_on="image_id", right_index=True, how="left")
    images["review_name"] = review_names(index).to_numpy()
    images["match"] = images["match"].fillna("not_in_export")
    return images.assign(key=images["image_id"])


def tag_images(images: pd.DataFrame, issues: pd.DataFrame, params: ApplyTagsParams,
               reviews: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tagged manifest (MANIFEST_COLUMNS) and the review conflicts."""
    decisions = decide(images, issues, params.rules, params.taxonomy)
    conflicts = pd.DataFrame(columns=["key", "file_name", "reviews", "sources"])
    if reviews is not None and len(reviews):
        names = images["review_name"] if "review_name" in images else images["file_name"]
        decisions, conflicts, _ = apply_reviews(decisions, reviews, dict(zip(names, images["key"])))
    out = images.merge(decisions, on="key", how="left")
    out["issues"] = out["key"].map(_issue_text(issues)).fillna("")
    for col in MANIFEST_COLUMNS:
        if col not in out:
            out[col] = ""
    return out[list(MANIFEST_COLUMNS)], conflicts


def read_reviews(reviews_dir: Path | None, params: ApplyTagsParams, class_names: list[str],
                 file_names: list[str]) -> pd.DataFrame:
    frames = []
    if reviews_dir is not None and reviews_dir.is_dir():
        for path in sorted(reviews_dir.glob("*.csv")):
            frames.append(read_reviews_csv(path, taxonomy=list(params.taxonomy), class_names=class_names,
                                           file_names=file_names, with_source=True))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*REVIEW_COLUMNS, "source"])


def review_page(manifest: pd.DataFrame, thumbnails: dict[str, bytes | None], params: ApplyTagsParams,
                class_names: list[str], title: str) -> str:
    flagged = manifest[(manifest["action"] != "keep") | (manifest["issues"] != "")]
    items = pd.DataFrame({
        "image_id": flagged["image_id"].astype(str), "file_name": flagged["review_name"].astype(str),
        "split": flagged["split"].astype(str), "label": flagged["class_name"].astype(str),
        "issues": flagged["issues"], "tags": flagged["tags"], "action": flagged["action"],
        "reasons": flagged["reasons"], "new_label": flagged["new_label"].fillna(""),
        "duplicate_group": flagged["duplicate_group"].fillna(""),
    })
    taxonomy = {k: v.description for k, v in params.taxonomy.items()}
    return render_review_page(items, thumbnails={i: thumbnails.get(i) for i in items["image_id"]}, taxonomy=taxonomy,
                              class_names=class_names, title=title)


def write_metrics(manifest: pd.DataFrame, metrics_path: Path, plots: Path) -> dict:
    tags = manifest.assign(tag=manifest["tags"].str.split(";")).explode("tag")
    tags = tags[tags["tag"].fillna("") != ""]
    metrics = {
        "images": len(manifest),
        "actions": {k: int(v) for k, v in manifest["action"].value_counts().sort_index().items()},
        "actions_per_split": {s: {k: int(v) for k, v in g["action"].value_counts().sort_index().items()}
                              for s, g in manifest.groupby("split")},
        "tags": {k: int(v) for k, v in tags["tag"].value_counts().sort_index().items()},
        "flagged": int((manifest["issues"] != "").sum()),
    }
    write_json(metrics_path, metrics)
    rows = ([("tag", k, v) for k, v in metrics["tags"].items()] + [("action", k, v) for k, v in metrics["actions"].items()])
    frame = pd.DataFrame(rows, columns=["kind", "name", "images"])
    bar_plot(frame.assign(label=frame["kind"] + ": " + frame["name"]), x="label", y="images",
             csv_path=plots / "tags_actions.csv", png_path=plots / "tags_actions.png",
             title="Tags and actions", horizontal=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--ingested", default="data/vl_ingested")
    p.add_argument("--reviews", default="data/reviews")
    p.add_argument("--output", default=None)
    p.add_argument("--html", default=None)
    p.add_argument("--conflicts", default=None)
    p.add_argument("--metrics", default=None)
    p.add_argument("--plots", default=None)
    p.add_argument("--vl_export", default=None, help="standalone: read this export directly (no dataset index)")
    p.add_argument("--dataset", default=None, help="standalone: dataset name (default params base.dataset)")
    p.add_argument("--generate_html", action="store_true", help="standalone: also write the review page")

    def body(args: argparse.Namespace) -> int:
        data = read_params_file(args.params)
        dataset = args.dataset or load_base(args.params).dataset
        params = from_dict(ApplyTagsParams, data.get("apply_tags"), "apply_tags")
        output = Path(args.output or f"data/manifests/{dataset}_tagged_manifest.csv")
        if args.vl_export:
            return standalone(Path(args.vl_export), dataset, output, args.generate_html, params)
        raw = RawDataset.open(args.raw)
        index, classes = raw.index(), raw.classes()
        media = pd.read_parquet(Path(args.ingested) / "media.parquet")
        issues = pd.read_parquet(Path(args.ingested) / "issues.parquet")
        issues = issues[issues["image_id"] != ""].assign(key=lambda f: f["image_id"])
        images = _images_from_index(index, media)
        class_names = list(classes["class_name"])
        reviews = read_reviews(Path(args.reviews), params, class_names, list(images["review_name"]))
        manifest, conflicts = tag_images(images, issues, params, reviews)
        write_csv(output, manifest)
        if args.conflicts:
            write_csv(args.conflicts, conflicts)
        if args.html:
            flagged_ids = manifest.loc[(manifest["action"] != "keep") | (manifest["issues"] != ""), "image_id"]
            thumbs = {i: safe_thumbnail(b) for i, b in raw.read_images(flagged_ids).items()}
            write_review_page(args.html, review_page(manifest, thumbs, params, class_names, f"{dataset}: review"))
        m = write_metrics(manifest, Path(args.metrics), Path(args.plots)) if args.metrics and args.plots else {}
        print(f"apply_tags: {m.get('actions', manifest['action'].value_counts().to_dict())}; "
              f"{len(reviews)} review row(s), {len(conflicts)} conflict(s)")
        return 0

    return cli.run(body, p, argv)


def standalone(export_path: Path, dataset: str, output: Path, html: bool, params: ApplyTagsParams) -> int:
    """One row per exported image; thumbnails from the export's images when it has them."""
    export = read_export(export_path, progress=True)
    media, issues = export.media, export.issues.assign(key=lambda f: f["media_key"])
    images = pd.DataFrame({
        "key": media["media_key"], "image_id": media["media_key"], "file_name": media["file_name"],
        "split": "", "label": media["label_name"], "class_name": media["label_name"],
        "uniqueness_score": media["uniqueness_score"], "cluster_id": media["cluster_id"],
        "user_tags": media["user_tags"], "label_source": media["label_source"], "match": "no_index",
    })
    names = media["file_name"].astype(str)
    images["review_name"] = names.where(~names.duplicated(keep=False), media["file_path"].astype(str)).to_numpy()
    reviews = None
    manifest, _ = tag_images(images, issues, params, reviews)
    flat = manifest.rename(columns={"reasons": "reason"})
    write_csv(output, flat[["file_name", "label", "issues", "tags", "action", "reason", "new_label",
                            "duplicate_group", "uniqueness_score"]])
    if html:
        thumbs: dict[str, bytes | None] = {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                folder = extract_images(export, tmp)
            except ExportFormatError:  # the export holds no images: placeholders
                folder = None
            if folder is not None:
                by_name = {f.name: f for f in Path(folder).rglob("*") if f.is_file()}
                for key, name in zip(manifest["image_id"], manifest["file_name"]):
                    f = by_name.get(str(name))
                    thumbs[key] = safe_thumbnail(f.read_bytes()) if f is not None else None
            class_names = sorted({str(x) for x in images["label"].fillna("") if x})
            page = review_page(manifest.assign(class_name=manifest["label"].fillna("")), thumbs, params,
                               class_names, f"{dataset}: review")
        write_review_page(output.with_suffix(".html"), page)
    print(f"apply_tags: {len(manifest)} exported images -> {output}"
          + (f" and {output.with_suffix('.html')}" if html else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
