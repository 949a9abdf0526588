"""build_manifest: the cleaned dataset manifest and a cleaning summary.

Inputs:  ``--raw`` (index), ``--tagged`` (apply_tags manifest), ``--leaks`` (leaks report), ``--policy``
         (the policy in force, written by apply_tags), params ``base``, ``build_manifest``.
Outputs: ``--output`` (data/manifests/<dataset>_cleaned_manifest.csv: every image once, final label,
         action, reasons), ``--summary`` (<dataset>_cleaning_summary.txt), ``--eval_labels`` (the test
         images with their leaked flag), ``--train_labels`` (the cleaned train set), ``--metrics``,
         ``--plots`` (what was removed, by reason; the policy analysis of vlclean.policy_analysis: reasons,
         buckets, reason overlap, combinations, classes, kept-vs-dropped distributions, ``classes/`` pages).
The class guard (``build_manifest.max_class_drop``) runs before the summary, so everything written
describes the manifest as written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vlclean import cli, schema
from vlclean.datasets import RawDataset
from vlclean.policy_analysis import (analyze_policy, guard_class_drops, read_policy_record, summary_lines,
                                     write_analysis)
from vlclean.manifest import (build_cleaned_manifest, cleaning_summary, eval_labels,
                              leak_copy_metrics, manifest_metrics, removal_truth_metrics,
                              train_labels)
from vlclean.params import load_params
from vlclean.reporting import bar_plot
from vlclean.storage import read_csv, write_csv, write_json, write_text


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    for flag in ("raw", "tagged", "leaks", "output", "summary", "eval_labels", "train_labels", "metrics", "plots"):
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--policy", default=None, help="the policy in force (apply_tags --policy); rules' buckets")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params)
        base, params = every.base, every.build_manifest
        raw = RawDataset.open(args.raw)
        tagged = read_csv(args.tagged, columns=schema.TAGGED_MANIFEST)
        leaks = read_csv(args.leaks, columns=schema.LEAKS_REPORT)
        policy = read_policy_record(args.policy) if args.policy else {"name": "unknown", "source": "", "rules": []}
        cleaned = build_cleaned_manifest(raw.index(), raw.classes(), tagged, leaks, params)
        uniqueness = tagged.set_index("image_id")["uniqueness_score"]
        cleaned, guard = guard_class_drops(cleaned, uniqueness, policy, params.max_class_drop,
                                           apply_to_test=params.apply_to_test)
        analysis = analyze_policy(cleaned, tagged, policy, params.over_pruning, cap=params.max_class_drop,
                                  guard=guard, apply_to_test=params.apply_to_test)
        write_csv(args.output, cleaned)
        summary, table = cleaning_summary(cleaned, base.dataset)
        summary += "\n" + "\n".join(summary_lines(analysis, params.over_pruning, params.max_class_drop)) + "\n"
        write_text(args.summary, summary)
        write_csv(args.eval_labels, eval_labels(cleaned))
        write_csv(args.train_labels, train_labels(cleaned))
        metrics = {**manifest_metrics(cleaned), "train_copies_of_leaks": leak_copy_metrics(cleaned, leaks, params)}
        metrics["policy"] = analysis.metrics
        truth = raw.truth()
        if not truth.empty:
            metrics["planted_issues_acted_on"] = removal_truth_metrics(cleaned, truth)
        write_json(args.metrics, metrics)
        removed = (table.groupby(["reason", "split"]).size().rename("images").reset_index()
                   if len(table) else table.assign(images=[]))
        bar_plot(removed, x="reason", y="images", hue="split", csv_path=Path(args.plots) / "removed.csv",
                 png_path=Path(args.plots) / "removed.png", title="Images removed or relabelled, by reason",
                 horizontal=True)
        write_analysis(analysis, args.plots, cap=params.max_class_drop, page_size=params.class_page_size)
        print(summary)
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
