"""Write the trial rows as a plain-text table, CSV, JSON or a Markdown table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from tuner.report._rows import TrialRow, as_records, record_columns

FORMATS = ("table", "csv", "json", "md")


def _cell(v: Any) -> str:
    """A value for people: numbers rounded, booleans on/off, nothing as '-'."""
    if v is None or v == "":
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"
    return " ".join(str(v).split())  # one line per row


def _csv(records: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: "" if v is None else v for k, v in rec.items()})
    return buf.getvalue()


def _md(records: list[dict[str, Any]], columns: list[str]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(esc(_cell(rec[c])) for c in columns) + " |" for rec in records]
    return "\n".join(lines) + "\n"


def _table(records: list[dict[str, Any]], columns: list[str]) -> str:
    """Aligned columns; the reason (long, free text) last, unpadded."""
    cols = [c for c in columns if c != "reason"] + ["reason"]
    table = [cols] + [[_cell(rec[c]) for c in cols] for rec in records]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols) - 1)]
    lines = []
    for r in table:
        cells = [c.rjust(w) for c, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    return "\n".join(lines) + "\n"


def format_rows(rows: Sequence[TrialRow], fmt: str) -> str:
    """`rows` in `fmt` (one of FORMATS); every format has one entry per row."""
    records = as_records(rows)
    columns = record_columns(rows)
    if fmt == "json":
        return json.dumps(records, indent=1) + "\n"
    if fmt == "csv":
        return _csv(records, columns)
    if fmt == "md":
        return _md(records, columns)
    if fmt == "table":
        return _table(records, columns) if records else "no trials\n"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")
