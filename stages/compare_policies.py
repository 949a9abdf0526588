"""compare_policies: cleaning policies side by side, from the experiments of `dvc exp show`.

Inputs:  the experiments derived from HEAD (``dvc.api.exp_show``; ``--all`` for every branch and tag),
         each with ``metrics/build_manifest.json`` (the policy analysis) and, where training ran,
         ``metrics/eval.json``.
Outputs: ``--output`` (reports/policies.md), ``--csv`` (reports/policies.csv), ``--plot``
         (reports/policies.png). Not a DVC stage: it reads many experiments, not one workspace.
Usage:   dvc exp run --queue -S apply_tags.rule_set=default,conservative
         dvc exp run --queue -S apply_tags.policy_file=policies/imagenet_1k_aggressive_clean.yaml
         dvc queue start -j 2; python -m stages.compare_policies
"""

from __future__ import annotations

import argparse

from vlclean import cli
from vlclean.policy_compare import comparison_plot, comparison_table, markdown
from vlclean.storage import write_csv, write_text


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--repo", default=None, help="the DVC repository (default: the current one)")
    p.add_argument("--all", action="store_true", help="experiments of every commit, not only of HEAD")
    p.add_argument("--output", default="reports/policies.md")
    p.add_argument("--csv", default="reports/policies.csv")
    p.add_argument("--plot", default="reports/policies.png")

    def body(args: argparse.Namespace) -> int:
        import dvc.api

        rows = dvc.api.exp_show(repo=args.repo, num=-1 if args.all else 1)
        table = comparison_table(rows)
        text = markdown(table)
        write_text(args.output, text)
        write_csv(args.csv, table)
        comparison_plot(table, png_path=args.plot)
        print(text)
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
