"""report: turn a sweep of experiments into the findings report (table, plot, X / Y / damage ratio).

Inputs:  ``dvc exp show --json`` (run here, or ``--exp_json FILE`` saved from it).
Outputs: ``--output`` (reports/findings.md), ``--plot`` (reports/findings.png), ``--json`` (the
         numbers). Not a DVC stage: it reads many experiments, not one workspace.
Usage:   dvc exp run --queue -S 'noise.rate=0.0,0.2,0.4' -S 'noise.kind=random,intelligent' \\
             -S 'denoise.method=none,oracle'; dvc queue start -j 2; python -m stages.report
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from vlclean import cli
from vlclean.errors import VLCleanError
from vlclean.findings import experiments_table, headline, load_exp_show, markdown, summarise
from vlclean.reporting import findings_plot
from vlclean.storage import write_json, write_text


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--exp_json", default=None, help="saved `dvc exp show --json` output (default: run it)")
    p.add_argument("--output", default="reports/findings.md")
    p.add_argument("--plot", default="reports/findings.png")
    p.add_argument("--json", default="reports/findings.json")

    def body(args: argparse.Namespace) -> int:
        if args.exp_json:
            text = Path(args.exp_json).read_text()
        else:
            proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json", "-A"], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise VLCleanError(f"dvc exp show failed: {proc.stderr.strip()}")
            text = proc.stdout
        table = experiments_table(load_exp_show(text))
        summary = summarise(table)
        heads = {kind: headline(summary, kind) for kind in sorted(summary["noise.kind"].dropna().unique())}
        write_text(args.output, markdown(summary, heads))
        findings_plot(summary, png_path=Path(args.plot))
        write_json(args.json, {"experiments": len(table), "headline": heads,
                               "summary": summary.to_dict(orient="records")})
        print(markdown(summary, heads))
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
