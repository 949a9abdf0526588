"""What every stage's ``main`` shares: error reporting and the common flags."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from vlclean.errors import VLCleanError

log = logging.getLogger("vlclean")


class UsageError(VLCleanError):
    """Flags that do not fit together."""


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with ``--params`` (the params file, default ``params.yaml``)."""
    p = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0] if description else None)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(body: Callable[[argparse.Namespace], int | None], p: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``body``; a user error prints one clear line and returns 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = p.parse_args(argv)
    try:
        return body(args) or 0
    except VLCleanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
