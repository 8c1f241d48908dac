"""The documented layout of each JSON result (``dnnmap schema KIND`` prints its JSON Schema).

Every result starts with the :mod:`envelope <dnnmap.report.envelope>` (``schema_version``,
``kind``, ``dnnmap_version``). Records allow extra keys: a metric added later is not a breaking
change; renaming or removing one is, and bumps ``SCHEMA_VERSION``.

>>> sorted(SCHEMAS)
['analyze', 'compare', 'sweep']
>>> json_schema("analyze")["properties"]["schema_version"]["const"]
1
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from dnnmap.report.envelope import SCHEMA_VERSION


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Envelope(_Open):
    schema_version: Literal[SCHEMA_VERSION] = Field(description="Layout version of this result (breaking changes bump it)")  # type: ignore[valid-type]
    kind: str = Field(description="The command that wrote it: analyze, compare, sweep ...")
    dnnmap_version: str = Field(description="The dnnmap package that wrote it")


class EstimateSummary(_Open):
    """The headline numbers of one model on one device (``Estimate.summary()``). SI units."""

    model: str
    device: str
    device_class: str = Field(description="cpu, gpu, tpu or kpu")
    precision: str
    batch: int
    strategy: str = Field(description="Fusion strategy of the kernels: unfused, greedy, compiler")
    mode: str = Field(description="eager, compiled or cudagraph")
    provenance: str = Field(description="theoretical (datasheet figures) or calibrated (measured)")
    subgraphs: int = Field(description="Kernels launched")
    streams: int
    latency_s: float = Field(description="End-to-end latency of one batch, from the schedule")
    throughput_per_s: float = Field(description="Samples per second: batch / latency")
    utilization: float | None = Field(description="Time-weighted compute utilization, 0..1")
    units_busy: float | None
    flops_utilization: float | None = Field(description="Achieved FLOP/s / peak (MFU)")
    energy_per_inference_j: float
    energy_per_sample_j: float
    average_power_w: float
    bound: str = Field(description="compute, memory, overhead, power or host")
    flops: int
    bytes: int
    ridge_point: float | None = Field(description="FLOPs per byte where the roofline turns")
    naive_latency_s: float = Field(description="Total FLOPs / peak FLOP/s")
    naive_error: float | None = Field(description="latency / naive latency; null when the model has no FLOPs")
    host_s: float = Field(description="Host time issuing kernels")
    device_idle_s: float = Field(description="Device time waiting for the host")
    estimated_share: float = Field(description="Share of kernel time resting on an estimated figure, 0..1")
    unknown_ops: int = Field(description="Op kinds without a cost rule (counted as zero work)")


class SubgraphRecord(_Open):
    """One kernel: its work, its time terms and what bounds it."""

    subgraph_id: int
    name: str
    op_class: str
    flops: int
    bytes: int
    traffic: dict[str, int] = Field(description="Bytes moved per memory level")
    compute_s: float
    memory_s: float
    overhead_s: float
    latency_s: float
    bound: str
    achieved_flops: float
    explanation: str = Field(description="Why the kernel takes the time it does (analyze --explain)")
    provenance: dict[str, str] = Field(description="Where each term's figure comes from: sourced, estimated, measured")
    stream: int
    start_s: float | None


class CostRecord(_Open):
    """What the prediction costs at a device-hour price (all null without a price)."""

    price_per_hour_usd: float | None
    price_source: str | None = Field(description="--price-per-hour, or the profile's dated citation")
    usd_per_1000_inferences: float | None
    usd_per_million_tokens: float | None = Field(description="With a sequence length: per token processed")


class AnalyzeResult(Envelope):
    cost: CostRecord | None = None
    summary: EstimateSummary
    notes: list[str]
    unknown_ops: list[str]
    subgraphs: list[SubgraphRecord]


class CompareRow(EstimateSummary):
    speedup_vs_baseline: float
    baseline: str
    price_per_hour_usd: float | None = Field(default=None, description="USD per device-hour (--price-per-hour "
                                             "for every device, else the profile's)")
    price_source: str | None = None
    usd_per_1000_inferences: float | None = None
    usd_per_million_tokens: float | None = None


class CompareResult(Envelope):
    baseline: str
    devices: list[CompareRow]


def _sweep_row() -> type[BaseModel]:
    from dnnmap.sweep.table import (
        CASE_COLUMNS,
        COST_COLUMNS,
        INT_COLUMNS,
        METRIC_COLUMNS,
        STR_COLUMNS,
        TAIL_COLUMNS,
    )

    def kind(c: str) -> Any:
        return int | None if c in INT_COLUMNS else str | None if c in STR_COLUMNS else float | None

    cols = [*CASE_COLUMNS, *METRIC_COLUMNS, *COST_COLUMNS, *TAIL_COLUMNS]
    return create_model("SweepRow", __base__=_Open, __doc__="One case: the table's columns (CSV / Parquet names).",
                        **{c: (kind(c), None) for c in cols})


class SweepStats(_Open):
    cases: int
    cached: int = Field(description="Cases found in the cache")
    computed: int = Field(description="Cases computed in this run")
    captures: int = Field(description="Capture + partition runs in this run")
    groups: int = Field(description="(model, shape, fusion) groups")
    wall_s: float
    executor: str


def _sweep_result() -> type[BaseModel]:
    return create_model("SweepResult", __base__=Envelope, spec=(dict[str, Any], ...), stats=(SweepStats, ...),
                        rows=(list[_sweep_row()], ...))  # type: ignore[valid-type]


SCHEMAS: dict[str, Any] = {"analyze": lambda: AnalyzeResult, "compare": lambda: CompareResult,
                           "sweep": _sweep_result}


def model_for(kind: str) -> type[BaseModel]:
    from dnnmap.errors import UnknownNameError

    if kind not in SCHEMAS:
        raise UnknownNameError("result kind", kind, SCHEMAS)
    return SCHEMAS[kind]()


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of ``kind``'s result."""
    schema = model_for(kind).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"dnnmap {kind} result, schema_version {SCHEMA_VERSION}"
    return schema
