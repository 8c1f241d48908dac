"""The validation statistics and record, on numbers worked out by hand."""

from __future__ import annotations

import json
import math

import pytest

from dnnmap.validate.record import (
    HELD_OUT_NOTE,
    Breakdown,
    ValidationCase,
    ValidationReport,
    merge_breakdowns,
    summarise,
)


def test_summary_statistics_by_hand() -> None:
    # (measured, predicted): errors +10 %, -10 %, +50 %, -25 %
    pairs = [(1.0, 1.1), (2.0, 1.8), (2.0, 3.0), (4.0, 3.0)]
    s = summarise(pairs)
    abs_errs = sorted([0.1, 0.1, 0.5, 0.25])
    assert s.cases == 4
    assert s.median_abs_error == pytest.approx((abs_errs[1] + abs_errs[2]) / 2)
    assert s.mape == pytest.approx(sum(abs_errs) / 4)
    assert s.within_10 == 2 / 4
    assert s.within_20 == 2 / 4
    # signed errors sorted: -0.25, -0.1, +0.1, +0.5 -> median of the middle two
    assert s.median_error == pytest.approx((-0.1 + 0.1) / 2, abs=1e-12)


def test_spearman_is_rank_correlation() -> None:
    # predictions 2x too slow everywhere: ranks agree exactly
    assert summarise([(m, 2 * m) for m in (1.0, 3.0, 2.0, 5.0)]).spearman == pytest.approx(1.0)
    # reversed order: -1
    assert summarise([(1.0, 4.0), (2.0, 3.0), (3.0, 2.0), (4.0, 1.0)]).spearman == pytest.approx(-1.0)
    # too few cases for a rank correlation
    assert math.isnan(summarise([(1.0, 1.0), (2.0, 2.0)]).spearman)


def test_failed_cases_are_excluded_not_zero() -> None:
    assert summarise([(0.0, 1.0), (1.0, 0.0)]).cases == 0
    assert math.isnan(summarise([]).median_abs_error)


def _case(model: str, measured: float, predicted: float, **kw) -> ValidationCase:
    return ValidationCase(model, 1, "cpu", 2, measured, measured * 0.95, 5, predicted, "compute",
                          {"compute": 1.0}, 10, 0.1, **kw)


def test_report_json_dataframe_and_notes() -> None:
    cases = (
        _case("a", 0.010, 0.011, by_class=(Breakdown("conv", 0.009, 0.008, 20),)),
        _case("b", 0.020, 0.010),
        ValidationCase("c", 1, "cpu", 2, 0.0, 0.0, 0, 0.0, "", {}, 0, 0.1, error_message="boom"),
    )
    r = ValidationReport("prof", "calibrated", "cpu", "AMD EPYC", 2, "unfused", "fp32", cases, "2026-01-01")
    assert r.summary.cases == 2
    assert [c.model for c in r.failed] == ["c"]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["cases"][0]["error"] == pytest.approx(0.011 / 0.010 - 1)
    assert d["cases"][0]["by_class"][0]["key"] == "conv"
    assert HELD_OUT_NOTE in d["notes"]
    df = r.to_dataframe()
    assert list(df["model"]) == ["a", "b", "c"]
    assert df.loc[1, "error"] == pytest.approx(0.010 / 0.020 - 1)


def test_merge_breakdowns_pairs_keys() -> None:
    rows = merge_breakdowns({"conv": 2.0, "matmul": 1.0}, {"conv": 3.0, "view": 0.5}, {"conv": 7})
    assert [r.key for r in rows] == ["conv", "matmul", "view"]
    assert rows[0].count == 7 and rows[0].error == pytest.approx(2.0 / 3.0 - 1)
    assert rows[1].measured_s == 0.0 and math.isnan(rows[1].error)
