"""The validation record: predicted vs measured per case, per op class / module, and a summary.

Error is signed and relative to the measurement: ``error = predicted / measured - 1``
(+0.25 means the prediction is 25 % too slow). The summary is the issue's list: median
|error|, MAPE, share within +-10 % and +-20 %, and Spearman's rank correlation.

>>> s = summarise([(1.0, 1.1), (2.0, 1.8), (4.0, 4.0)])
>>> round(s.median_abs_error, 3), s.within_10, s.within_20
(0.1, 1.0, 1.0)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

NULL_WHY = {
    "fresh_page_s": "the profile has no calibrated fresh-page cost",
    "spearman": "rank correlation needs at least two cases that ran",
    "error": "the case failed (see error_message) or no case ran",
}
HELD_OUT_NOTE = (
    "Held-out protocol: the hardware profile comes from microbenchmarks only (GEMM and conv "
    "grids, bandwidth sweeps, tiny-op dispatch, op-kind rates); no constant was fitted to the "
    "models validated here, and nothing in the prediction is keyed on a model or layer name."
)
EAGER_NOTE = (
    "Measured: eager PyTorch (one kernel per ATen op), so predictions use the 'unfused' "
    "partition; compiled execution (torch.compile) would correspond to the fused strategies."
)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Predicted vs measured seconds for one slice of a model: an op class or a module."""

    key: str  # "conv", "normalization" or "layer1"
    predicted_s: float
    measured_s: float
    count: int = 0  # ops (op class) or calls (module) in the slice

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0 if self.measured_s > 0 else math.nan


@dataclass(frozen=True, slots=True)
class SubgraphRow:
    """One predicted subgraph: what the table of worst subgraphs shows."""

    name: str
    op_class: str
    predicted_s: float
    bound: str
    explanation: str


@dataclass(frozen=True)
class ValidationCase:
    """One model at one batch size: the real run and the prediction for it."""

    model: str
    batch: int
    device: str
    threads: int
    measured_s: float  # median of the timed runs
    measured_min_s: float
    runs: int
    predicted_s: float
    bound: str  # the bound holding most of the predicted time
    bound_share: Mapping[str, float]
    subgraphs: int
    load_avg: float  # 1-minute load average while it was measured
    by_class: tuple[Breakdown, ...] = ()
    by_module: tuple[Breakdown, ...] = ()
    worst: tuple[SubgraphRow, ...] = ()  # the longest predicted subgraphs
    capture_path: str = ""
    busy_before: float = math.nan  # CPU share other processes used just before timing (nan: not checked)
    page_faults: float = 0.0  # minor page faults per run of the real model (allocator first touches)
    error_message: str = ""  # set when the model could not be run or predicted
    unknown_ops: tuple[str, ...] = ()  # ATen ops without a cost rule ("aten.x.default x2"), counted as zero
    # the host's speed against the profile's calibration, timed right after the case ran
    # ({"compute": 1.1, "memory": 0.9}: above 1, faster now; empty: not known), dnnmap.calibrate.probe
    host_speed: Mapping[str, float] = field(default_factory=dict)
    estimate: Any = field(default=None, compare=False, repr=False)  # the mapping.Estimate (not serialised)

    @property
    def ok(self) -> bool:
        return not self.error_message and self.measured_s > 0 and self.predicted_s > 0

    @property
    def error(self) -> float:
        """predicted / measured - 1 (nan when the case failed)."""
        return self.predicted_s / self.measured_s - 1.0 if self.ok else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "estimate"}
        d["bound_share"] = dict(self.bound_share)
        d["host_speed"] = dict(self.host_speed)
        for k in ("by_class", "by_module", "worst"):
            d[k] = [asdict(x) for x in d[k]]
        d["error"] = self.error
        return d


@dataclass(frozen=True, slots=True)
class Summary:
    cases: int
    median_abs_error: float
    mape: float  # mean |error| (a fraction: 0.12 = 12 %)
    within_10: float  # share of cases with |error| <= 0.10
    within_20: float
    spearman: float  # rank correlation of predicted and measured latency (nan if < 3 cases)
    median_error: float  # signed: > 0 means predictions run slow overall


def summarise(pairs: Iterable[tuple[float, float]]) -> Summary:
    """``pairs`` of (measured_s, predicted_s) -> the summary statistics."""
    pairs = [(m, p) for m, p in pairs if m > 0 and p > 0]
    if not pairs:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    errs = [p / m - 1.0 for m, p in pairs]
    abs_errs = [abs(e) for e in errs]
    return Summary(
        cases=len(pairs),
        median_abs_error=statistics.median(abs_errs),
        mape=statistics.fmean(abs_errs),
        within_10=sum(e <= 0.10 + 1e-12 for e in abs_errs) / len(pairs),
        within_20=sum(e <= 0.20 + 1e-12 for e in abs_errs) / len(pairs),
        spearman=_spearman([m for m, _ in pairs], [p for _, p in pairs]),
        median_error=statistics.median(errs),
    )


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 3:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`dnnmap.validate.validate` returns."""

    profile: str  # the hardware profile's name
    provenance: str  # "calibrated" or "theoretical"
    device: str  # "cpu" / "cuda"
    device_name: str  # "AMD EPYC" / "NVIDIA H100 80GB HBM3"
    threads: int
    strategy: str
    precision: str
    cases: tuple[ValidationCase, ...]
    date: str
    versions: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = (HELD_OUT_NOTE, EAGER_NOTE)
    fresh_page_s: float = math.nan  # measured cost of one fresh 4 KiB page (calibrated profiles)

    @property
    def summary(self) -> Summary:
        return summarise((c.measured_s, c.predicted_s) for c in self.cases if c.ok)

    @property
    def failed(self) -> tuple[ValidationCase, ...]:
        return tuple(c for c in self.cases if not c.ok)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; an undefined figure is null with its reason (``json_safe``), never NaN."""
        from dnnmap.outputs import json_safe

        return json_safe(self._raw_dict(), NULL_WHY)

    def _raw_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "provenance": self.provenance,
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "strategy": self.strategy,
            "precision": self.precision,
            "date": self.date,
            "fresh_page_s": self.fresh_page_s,
            "versions": dict(self.versions),
            "notes": list(self.notes),
            "summary": asdict(self.summary),
            "cases": [c.to_dict() for c in self.cases],
        }

    def to_dataframe(self):  # noqa: ANN201 - pandas.DataFrame
        """One row per case: model, batch, measured, predicted, error, bound, load."""
        import pandas as pd

        cols = ("model", "batch", "measured_s", "measured_min_s", "predicted_s", "error", "bound",
                "subgraphs", "threads", "load_avg", "page_faults", "runs", "error_message")
        rows = [{k: getattr(c, k) for k in cols} for c in self.cases]
        for r in rows:
            r["profile"] = self.profile
        return pd.DataFrame(rows, columns=[*cols, "profile"])


def merge_breakdowns(
    predicted: Mapping[str, float], measured: Mapping[str, float], counts: Mapping[str, int] | None = None
) -> tuple[Breakdown, ...]:
    """Pair two ``key -> seconds`` maps (a key missing on one side counts 0 there), largest
    measured first."""
    keys = sorted(set(predicted) | set(measured), key=lambda k: -max(measured.get(k, 0.0), predicted.get(k, 0.0)))
    counts = counts or {}
    return tuple(Breakdown(k, predicted.get(k, 0.0), measured.get(k, 0.0), counts.get(k, 0)) for k in keys)
