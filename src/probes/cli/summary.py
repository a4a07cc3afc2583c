"""``probes summary RUN``: final and extreme values of every metric, and per source the section its
probe kind declares (pairs by change, surprising samples, collapse events, benchmarks, IFD...)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any, Optional, TextIO

from probes.cli.common import (
    add_run_arguments,
    error_line,
    fmt_num,
    open_for_command,
    printable,
    strict_json,
    table,
)
from probes.core import kinds
from probes.runlog import layout as fmt
from probes.runlog.errors import RunLogError

__all__ = ["register", "render_summary", "run"]


def register(sub: Any) -> None:
    """Add the ``summary`` subcommand to the ``probes`` parser's subparsers."""
    p = sub.add_parser(
        "summary",
        help="tables of final and extreme values, collapse events, surprising samples, benchmarks...",
        description="Summarise a run log: per source the final and extreme value of every metric (with the"
        " step and element where it occurred) and the section of its probe kind: keyword probabilities per"
        " pair, surprising priming samples, format-collapse events, accuracy per benchmark against chance,"
        " IFD per sample. Exit code 0, or 1 when the run cannot be read or holds no records."
        " --json prints strict JSON: NaN metric values are null, other non-finite numbers (e.g. in run"
        ' information) the strings "NaN", "Infinity" and "-Infinity".',
    )
    add_run_arguments(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="rows per pair/sample/... table (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Handle ``probes summary``; returns the exit code (errors go to stderr)."""
    out = out if out is not None else sys.stdout
    from probes.runlog.summary import summarize

    if args.limit < 1:
        print(f"probes summary: error: --limit must be a positive integer, got {args.limit}", file=sys.stderr)
        return 2
    children = runs_below(args.run)
    if children is not None:  # a folder of runs, not a run: list them
        return _list_runs(args, children, out)
    reader = open_for_command(args, "summary")
    if reader is None:
        return 1
    try:
        summary = summarize(reader, limit=args.limit)
        text = json.dumps(strict_json(summary), indent=2, allow_nan=False) if args.json else render_summary(summary)
    except (RunLogError, ValueError, OSError) as e:  # found while reading (e.g. a bad checksum)
        if getattr(args, "debug", False):
            raise
        print(error_line("summary", e), file=sys.stderr)
        return 1
    out.write(text + "\n")
    if not summary["sources"]:
        print(
            printable(f"probes summary: error: {args.run} holds no records (no shard files found yet?)"),
            file=sys.stderr,
        )
        return 1
    return 0


def runs_below(path: Any, *, depth: int = 2) -> Optional[list[Path]]:
    """The run directories (folders holding shard files) at most ``depth`` levels below ``path``,
    sorted; None when ``path`` is itself a run, is not a directory, or holds no runs. Links are not
    followed."""
    root = Path(path)
    if not root.is_dir() or root.is_symlink() or _has_shards(root):
        return None
    found: list[Path] = []
    level = [root]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                entries = sorted(e for e in d.iterdir() if e.is_dir() and not e.is_symlink())
            except OSError:
                continue
            for e in entries:
                (found if _has_shards(e) else nxt).append(e)
        level = nxt
    return sorted(found) or None


def _has_shards(d: Path) -> bool:
    try:
        return any(fmt.SHARD_RE.match(e.name) for e in d.iterdir())
    except OSError:
        return False


def _list_runs(args: argparse.Namespace, runs: list[Path], out: TextIO) -> int:
    """One line per run below a folder (path, status, last step, records per source)."""
    from probes.runlog import open_run

    rows: list[dict[str, Any]] = []
    for path in runs:
        try:
            info = open_run(path, strict=False).info
            rows.append({"run": str(path), "status": info["status"], "last_step": info["last_step"],
                         "records": dict(info["n_records"])})
        except (RunLogError, ValueError, OSError) as e:
            rows.append({"run": str(path), "status": f"unreadable: {e}", "last_step": None, "records": {}})
    if args.json:
        out.write(json.dumps(strict_json({"folder": str(args.run), "runs": rows}), indent=2, allow_nan=False) + "\n")
        return 0
    out.write(printable(f"{args.run} is a folder of {len(rows)} run(s); summarise one with probes summary RUN:") + "\n")
    body = [
        [r["run"], r["status"], r["last_step"], ", ".join(f"{k} {v}" for k, v in r["records"].items()) or "-"]
        for r in rows
    ]
    out.write(table(["run", "status", "last step", "records"], body) + "\n")
    return 0


def _when(t: Any) -> str:
    """A Unix time as local date and time; the raw number when it is not a plausible one."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return "-"
    try:
        return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):  # NaN, inf, milliseconds, year out of range
        return f"{fmt_num(t)} (not a valid time)"


def render_summary(summary: dict[str, Any]) -> str:
    """The text form of :func:`probes.runlog.summary.summarize`'s result."""
    lines = _header(summary)
    for src in summary["sources"]:
        head = f"{printable(src['source'])} ({printable(src['type'])}): {src['records']} records"
        lines += ["", f"{head}, steps {src['first_step']}..{src['last_step']}"]
        kind = kinds.get(src["type"])
        section = src.get(kind.key)
        hidden = set(section.get("hidden_metrics", ())) if isinstance(section, dict) else set()
        shown = [m for m in src["metrics"] if m["name"] not in hidden and _carries_data(m)]
        lines.append(_metric_table(shown))
        left = [m["name"] for m in src["metrics"] if m not in shown]
        if left:
            lines.append(printable(f"  no data or shown below: {', '.join(left)}"))
        if kind.summary_lines is not None and src.get(kind.key):
            lines += kind.summary_lines(src[kind.key])
    return "\n".join(lines)


def _header(summary: dict[str, Any]) -> list[str]:
    info = summary["run"]
    tl = [t for t in summary["timelines"] if t["timeline"] == info["timeline"]]
    resumed = ""
    if tl and tl[0]["parent"] >= 0:
        resumed = f" (resumed after step {tl[0]['fork_step']} of timeline {tl[0]['parent']})"
    lines = [
        f"run      {printable(info['path'])}",
        f"status   {info['status']}   timeline {info['timeline']} of {info['n_timelines']}{resumed}"
        f"   shards {info['n_shards']}   last step {info['last_step']}",
    ]
    run_info = info.get("run", {})
    lines.append(f"started  {_when(run_info.get('started'))}   updated {_when(info.get('updated'))}")
    facts = [
        printable(f"{k}={v}") for k, v in run_info.items() if k != "started" and isinstance(v, (str, int, float))
    ]
    if facts:
        lines.append("info     " + "  ".join(facts))
    lines += [printable(f"skipped  {s['file']}: {s['problem']}") for s in info.get("skipped", [])]
    return lines


def _carries_data(m: dict[str, Any]) -> bool:
    """A metric row is shown only where it carries data: not NaN in every element of every record."""
    size = 1
    for d in m.get("shape", []):
        size *= int(d)
    return not (m.get("records") and size and m.get("nan", 0) == m["records"] * size)


def _metric_table(metrics: list[dict[str, Any]]) -> str:
    rows = []
    for m in metrics:
        shape = "x".join(map(str, m["shape"])) or "scalar"
        if m.get("final_is_count"):
            final = f"{m['final']} true"
        elif m["shape"]:
            final = "mean " + fmt_num(m.get("final_mean"))
        else:
            final = fmt_num(m.get("final"))
        rows.append([m["name"], shape, final, _at(m.get("min")), _at(m.get("max"))])
    return table(["metric", "shape", "final", "min (step, element)", "max (step, element)"], rows)


def _at(extreme: Any) -> str:
    if not extreme:
        return "-"
    where = f"{extreme['step']}, {printable(extreme['element'])}" if extreme["element"] else f"{extreme['step']}"
    return f"{fmt_num(extreme['value'])} ({where})"
