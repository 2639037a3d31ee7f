"""``fdem metrics check``: which metrics are ready, and what to put where for the others."""

from __future__ import annotations

import argparse


def status_table(statuses) -> str:
    """Markdown table: metric | ready | what is missing and where to put it."""
    lines = ["| metric | ready | missing (where to put it) |", "|---|---|---|"]
    for status in statuses:
        lines.append(f"| {status.name} | {'yes' if status.ready else 'no'} | {status.hint or '-'} |")
    return "\n".join(lines)


def cmd_metrics(args: argparse.Namespace) -> None:
    """Report metric readiness; never downloads, always exits 0."""
    from fdem.metrics.availability import metric_status

    if args.action == "check":
        print(status_table(metric_status()))


def add_parsers(sub) -> None:
    """Add the ``metrics`` sub-command (action ``check``) to an ``add_subparsers()`` object."""
    p = sub.add_parser("metrics", help="check which metrics can run here (packages and weight files)")
    p.add_argument("action", choices=["check"], help="check: list the metrics, ready or not, and what is missing")
    p.set_defaults(func=cmd_metrics)
