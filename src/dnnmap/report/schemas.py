"""The documented layout of each JSON result (``dnnmap schema KIND`` prints its JSON Schema).

Every result starts with the :mod:`envelope <dnnmap.report.envelope>` (``schema_version``,
``kind``, ``dnnmap_version``). Records allow extra keys: a metric added later is not a breaking
change; renaming or removing one is, and bumps ``SCHEMA_VERSION``.

>>> sorted(SCHEMAS)  # doctest: +NORMALIZE_WHITESPACE
['analyze', 'compare', 'count', 'generate', 'partition', 'sweep', 'train', 'validate',
 'validate-measurements']
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


class MemoryPerDevice(_Open):
    """What one device holds, bytes."""

    weights_bytes: int = Field(description="Weights / (tp x pp); expert weights also / ep")
    activation_bytes: int = Field(description="Peak live activations of one micro-batch / tp")
    kv_cache_bytes: int
    workspace_bytes: int
    memory_bytes: int
    capacity_bytes: int
    fits: bool


class ParallelRecord(_Open):
    """A request on many devices (``--devices / --tp / --pp / --dp / --microbatches / --ep``). Seconds."""

    plan: str = Field(description="dp / tp / pp / micro-batches / ZeRO / ep, e.g. dp1-tp2-pp2-mb4-zero0")
    devices: int
    dp: int = Field(description="Replicas of the request batch")
    tp: int = Field(description="Tensor-parallel degree")
    pp: int = Field(description="Pipeline stages")
    ep: int = Field(description="Expert-parallel degree (MoE)")
    microbatches: int = Field(description="Micro-batches the request batch streams through the stages in")
    microbatch: int = Field(description="Samples per micro-batch")
    latency_s: float = Field(description="One request: fill + drain of its micro-batches (a decode step: "
                             "max(m x period, one micro-batch through every stage))")
    throughput_per_s: float = Field(description="Samples per second of all replicas, a stream keeping every stage "
                                    "busy: micro-batch / period x dp")
    period_s: float = Field(description="Slowest stage + send: one micro-batch leaves the pipeline per period")
    bubble_s: float = Field(description="Latency less micro-batches x slowest stage: the busiest device waiting")
    compute_s: float = Field(description="One micro-batch through every layer on one tensor-parallel device")
    communication_s: float = Field(description="Collectives and sends of one micro-batch's pass: tp_comm_s + "
                                   "ep_comm_s + (pp - 1) x send_s")
    tp_comm_s: float
    tp_all_reduce_s: float = Field(description="One tensor-parallel all-reduce of the activation")
    all_reduces: int
    ep_comm_s: float
    ep_all_to_all_s: float = Field(description="One expert all-to-all (dispatch or combine)")
    all_to_alls: int
    send_s: float = Field(description="One stage-to-stage activation send")
    stage_s: list[float] = Field(description="One micro-batch's seconds on each pipeline stage")
    memory_per_device: MemoryPerDevice


class PlanRow(_Open):
    """One plan of ``--plan auto``, best first."""

    plan: str
    devices: int
    latency_s: float
    throughput_per_s: float
    bubble_s: float
    communication_s: float
    memory_bytes: int | None
    fits: bool | None


class AnalyzeResult(Envelope):
    cost: CostRecord | None = None
    summary: EstimateSummary
    notes: list[str]
    unknown_ops: list[str]
    subgraphs: list[SubgraphRecord]
    parallel: ParallelRecord | None = Field(default=None, description="The plan, on many devices (absent on one)")
    plans: list[PlanRow] | None = Field(default=None, description="--plan auto: the fitting plans, best first")


class CompareRow(EstimateSummary):
    speedup_vs_baseline: float
    baseline: str
    price_per_hour_usd: float | None = Field(default=None, description="USD per device-hour (--price-per-hour "
                                             "for every device, else the profile's)")
    price_source: str | None = None
    usd_per_1000_inferences: float | None = None
    usd_per_million_tokens: float | None = None
    plan: str | None = Field(default=None, description="With --devices / --tp / --pp / --dp: the plan every "
                             "device is priced under (latency and throughput are the plan's)")
    devices: int | None = None
    communication_s: float | None = None
    bubble_s: float | None = None
    memory_per_device_bytes: int | None = None
    fits_per_device: bool | None = None


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


# -- count, partition --------------------------------------------------------------------------------
class CaptureMeta(_Open):
    """How the model was captured."""

    model: str
    batch: int | None = None
    dtype: str | None = None
    input_shapes: list[Any] | None = None
    torch_version: str | None = None
    capture_path: str | None = Field(default=None, description="Which capture path was used (export, dynamo ...)")


class CountTotals(_Open):
    tensor_flops: int = Field(description="FLOPs on matrix units (GEMM, conv, attention matmuls)")
    vector_flops: int
    transcendentals: int
    macs: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int
    params: int
    flops: int
    ops: int
    unknown_ops: int = Field(description="Ops without a cost rule (counted as zero work)")


class CountGroup(_Open):
    """FLOPs and bytes of one op class (``op_class``) or one module (``module``)."""

    ops: int
    flops: int
    tensor_flops: int
    vector_flops: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int


class CountResult(Envelope):
    model: str
    meta: CaptureMeta
    totals: CountTotals
    per_class: list[CountGroup]
    per_module: list[CountGroup]
    ledger: list[dict[str, Any]] = Field(description="Coverage ledger: ops without a cost rule, how often")


class PartitionSummary(_Open):
    model: str
    strategy: str = Field(description="unfused, greedy or compiler")
    onchip_budget_bytes: int | None
    ops: int
    subgraphs: int = Field(description="Fused kernels")
    flops: int
    unfused_bytes: int = Field(description="Bytes moved if every op were its own kernel")
    external_bytes: int = Field(description="Bytes the fused kernels move to and from memory")
    weight_bytes: int
    traffic_saved: float = Field(description="1 - external / unfused bytes")
    stages: int
    max_parallel: int


class PartitionSubgraph(_Open):
    id: int
    name: str
    ops: int
    op_class: str
    stage: int
    flops: int
    bytes_read: int
    bytes_written: int
    weight_bytes: int
    arithmetic_intensity: float | None
    op_ids: list[str]


class PartitionResult(Envelope):
    summary: PartitionSummary
    concurrency: dict[str, dict[str, Any]] = Field(description="Op- and kernel-level DAG width and critical path")
    subgraphs: list[PartitionSubgraph]
    edges: list[list[int]] = Field(description="[producer id, consumer id] between kernels")
    fusion_log: dict[str, dict[str, int]] = Field(description="Fusions made and refused, by reason")
    meta: CaptureMeta


# -- generate, train -------------------------------------------------------------------------------
class GenerationRowRecord(_Open):
    """One batch size; latencies are null when it does not fit. Seconds and bytes."""

    batch: int
    fits: bool
    ttft_s: float | None = Field(description="Time to first token: the prefill")
    tpot_start_s: float | None = Field(description="Time per output token at the first decode step")
    tpot_end_s: float | None = Field(description="Time per output token at the last decode step")
    tpot_mean_s: float | None
    e2e_s: float | None = Field(description="Prefill + every decode step")
    output_tokens_per_s: float | None
    prefill_bound: str
    decode_bound: str
    message: str = Field(description="Why a batch does not fit, and what would")
    weights_bytes: int
    activation_bytes: int
    kv_cache_bytes: int
    workspace_bytes: int
    memory_bytes: int
    capacity_bytes: int


class GeneratePlanRow(_Open):
    """One plan of ``generate --plan auto`` at its one batch size. Seconds, bytes per device."""

    plan: str
    devices: int
    dp: int
    tp: int
    pp: int
    ep: int
    microbatches: int
    ttft_s: float | None
    tpot_mean_s: float | None
    e2e_s: float | None
    cluster_tokens_per_s: float | None = Field(description="Decode tokens/s of all replicas, pipeline kept full")
    memory_bytes: int
    fits: bool


class GenerateResult(Envelope):
    model: str
    device: str
    prompt: int = Field(description="Prompt tokens per sequence")
    gen: int = Field(description="Tokens generated per sequence")
    precision: str
    mode: str
    weights: str | None = Field(description="Stored weight format (int8, int4, fp8), null: the precision")
    kv_dtype: str | None
    max_batch: int = Field(description="Largest batch whose memory fits at prompt + gen tokens")
    kv_bytes_per_token: int = Field(description="Per sequence, all layers, K and V")
    rows: list[GenerationRowRecord]
    notes: list[str]
    meta: dict[str, Any]
    plans: list[GeneratePlanRow] | None = Field(default=None, description="--plan auto: the fitting plans, "
                                                "fastest end to end first")


class TrainStep(_Open):
    """One training step on one plan. Milliseconds, GB per device."""

    model: str
    device: str
    devices: int
    batch: int = Field(description="Global batch: samples per step")
    seq_len: int | None
    precision: str
    optimizer: str
    recompute: str
    plan: str | None = Field(description="dp / tp / pp / microbatches / ZeRO / ep (expert parallelism, MoE); "
                             "null on one device")
    step_ms: float
    forward_ms: float
    backward_ms: float
    optimizer_ms: float
    communication_ms: float = Field(description="Exposed communication (not hidden behind compute)")
    bubble_ms: float = Field(description="Pipeline bubble")
    samples_per_s: float
    tokens_per_s: float | None
    mfu: float = Field(description="Model FLOPs utilization, 0..1")
    model_tflops: float
    fits: bool
    capacity_gb: float
    mem_weights_gb: float
    mem_gradients_gb: float
    mem_optimizer_state_gb: float
    mem_saved_activations_gb: float
    mem_peak_gb: float
    mem_persistent_gb: float
    all_to_alls: int = Field(0, description="Expert-parallel all-to-alls per step on one device (MoE, ep > 1)")
    tp_comm_ms: float | None = Field(None, description="Tensor-parallel all-reduces and pipeline sends on the "
                                     "critical path, per step; many devices only")
    ep_comm_ms: float | None = Field(None, description="Expert-parallel all-to-alls per step; many devices only")
    ep_all_to_all_ms: float | None = Field(None, description="One expert-parallel all-to-all; many devices only")
    dp_comm_total_ms: float | None = Field(None, description="Data-parallel gradient all-reduces, hidden or not; "
                                           "many devices only")
    dp_comm_exposed_ms: float | None = Field(None, description="The part of dp_comm_total_ms (and ZeRO-3 gathers) "
                                             "not hidden behind the backward; many devices only")


class TrainResult(Envelope):
    results: list[TrainStep] = Field(description="One step per plan (one entry without --plan auto)")


# -- validate --------------------------------------------------------------------------------------
class ValidationSummary(_Open):
    """Prediction error over the cases (fractions: 0.12 = 12 %); null where undefined."""

    cases: int
    median_abs_error: float | None
    mape: float | None
    within_10: float | None
    within_20: float | None
    spearman: float | None = Field(description="Rank correlation of predicted and measured; null under 3 cases")
    median_error: float | None = Field(description="Signed: > 0 means predictions run slow")


class ValidationCase(_Open):
    model: str
    batch: int
    device: str
    measured_s: float | None
    predicted_s: float | None
    bound: str
    error: float | None = Field(description="predicted / measured - 1")


class ValidateResult(Envelope):
    """``dnnmap validate MODEL ... -H PROFILE``: predictions against runs timed on this machine."""

    profile: str
    provenance: str
    device: str
    precision: str
    date: str
    versions: dict[str, Any]
    notes: list[str]
    summary: ValidationSummary
    cases: list[ValidationCase]


class PublishedCaseRecord(_Open):
    label: str
    model: str
    batch: int
    seq_len: int | None
    mode: str
    device: str = Field(description="The device the measurement was taken on")
    profile: str = Field(description="The profile that predicted it")
    provenance: str
    measured_s: float
    predicted_s: float
    bound: str
    source: str = Field(description="Where the measurement was published")
    error: float = Field(description="predicted / measured - 1")


class ValidateMeasurementsResult(Envelope):
    """``dnnmap validate --measurements CSV``: predictions against latencies measured elsewhere."""

    measurements: str = Field(description="The CSV file")
    summary: ValidationSummary
    by_profile: dict[str, ValidationSummary]
    skipped: list[str]
    notes: list[str]
    cases: list[PublishedCaseRecord]


SCHEMAS: dict[str, Any] = {"analyze": lambda: AnalyzeResult, "compare": lambda: CompareResult,
                           "count": lambda: CountResult, "generate": lambda: GenerateResult,
                           "partition": lambda: PartitionResult, "sweep": _sweep_result,
                           "train": lambda: TrainResult, "validate": lambda: ValidateResult,
                           "validate-measurements": lambda: ValidateMeasurementsResult}


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
