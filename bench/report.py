"""Result rows: median/min/max of the runs, the baseline measured in the same runs, the ratio and the
goal; printed as a table and written to bench/results/latest.json and latest.md."""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Number = float | int | None


def _clean(values: list[Number] | None) -> list[float]:
    return [float(v) for v in values or [] if v is not None and not (isinstance(v, float) and math.isnan(v))]


def median(values: list[Number] | None) -> float | None:
    clean = _clean(values)
    return statistics.median(clean) if clean else None


@dataclass
class Row:
    figure: int
    metric: str
    backend: str
    unit: str
    values: list[Number]
    baseline: list[Number] | None = None
    baseline_label: str = ""
    ratio: str | None = None  # "base/value" or "value/base": how the ratio is computed
    goal: str = "—"
    # Machine-checkable goal: [(on, op, target)] with on in {"value", "ratio"}, op in {"<", "<=", ">", ">="}.
    checks: list[tuple[str, str, float]] = field(default_factory=list)
    note: str = ""
    status: str = "ok"  # ok | not run | crashed
    errors: int = 0  # failed turns/requests/sockets of the measured side: the goal is then not met

    @classmethod
    def not_run(cls, figure: int, metric: str, *, backend: str = "", note: str = "") -> Row:
        return cls(figure, metric, backend, "", [], note=note, status="not run")

    @classmethod
    def crashed(cls, figure: int, metric: str, note: str) -> Row:
        return cls(figure, metric, "", "", [], note=note, status="crashed")

    # ------------------------------------------------------------------ derived

    @property
    def med(self) -> float | None:
        return median(self.values)

    @property
    def lo(self) -> float | None:
        clean = _clean(self.values)
        return min(clean) if clean else None

    @property
    def hi(self) -> float | None:
        clean = _clean(self.values)
        return max(clean) if clean else None

    @property
    def base(self) -> float | None:
        return median(self.baseline)

    @property
    def ratio_value(self) -> float | None:
        value, base = self.med, self.base
        if self.ratio is None or value is None or base is None:
            return None
        num, den = (base, value) if self.ratio == "base/value" else (value, base)
        if den == 0:
            return math.inf if num else 1.0
        return num / den

    @property
    def met(self) -> bool | None:
        if not self.checks or self.status != "ok":
            return None
        if self.errors:
            return False
        for on, op, target in self.checks:
            actual = self.med if on == "value" else self.ratio_value
            if actual is None:
                return False
            if not {"<": actual < target, "<=": actual <= target, ">": actual > target, ">=": actual >= target}[op]:
                return False
        return True

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            median=self.med,
            min=self.lo,
            max=self.hi,
            baseline_median=self.base,
            ratio_value=self.ratio_value,
            met=self.met,
            runs=len(_clean(self.values)),
        )
        return data


# --------------------------------------------------------------------------- formatting


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞"
    magnitude = abs(value)
    if value == int(value) and magnitude < 1e15:
        return f"{int(value):,}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(row: Row) -> str:
    value = row.ratio_value
    return "—" if value is None else f"{fmt(value)}x"


def met_text(row: Row) -> str:
    if row.status != "ok":
        return row.status
    return {None: "", True: "yes", False: "NO"}[row.met]


HEADERS = ["#", "metric", "backend", "median", "min", "max", "baseline", "ratio", "goal", "met", "note"]


def cells(row: Row) -> list[str]:
    unit = f" {row.unit}" if row.unit else ""
    baseline = (
        "—" if row.base is None else f"{fmt(row.base)} ({row.baseline_label})" if row.baseline_label else fmt(row.base)
    )
    return [
        str(row.figure),
        row.metric,
        row.backend,
        (fmt(row.med) + unit) if row.status == "ok" else "—",
        fmt(row.lo),
        fmt(row.hi),
        baseline,
        fmt_ratio(row),
        row.goal,
        met_text(row),
        "; ".join(x for x in (f"errors {row.errors}" if row.errors else "", row.note) if x),
    ]


def table(rows: list[Row]) -> str:
    data = [HEADERS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in data) for i in range(len(HEADERS))]
    widths[-1] = min(widths[-1], 60)
    lines = []
    for n, line in enumerate(data):
        lines.append("  ".join(c[: widths[i]].ljust(widths[i]) for i, c in enumerate(line)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    head = [h for h in HEADERS]
    out = [
        f"Measured {meta['date']} on {meta['cpus']} cores ({meta['mode']} mode, {meta['runs']} run(s) per figure; "
        "median with min and max; baseline measured in the same run).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |")
    return "\n".join(out) + "\n"


def write(rows: list[Row], meta: dict[str, Any], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.json").write_text(json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows]}, indent=2))
    (results / "latest.md").write_text(markdown(rows, meta))


def meta(quick: bool, runs: int, seconds: float) -> dict[str, Any]:
    import os

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "mode": "quick" if quick else "full",
        "runs": runs,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds": round(seconds, 1),
    }
