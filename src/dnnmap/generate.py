"""LLM generation: time to first token, time per output token, memory that must fit.

A request (model, device, prompt P, N generated tokens, batches) becomes two captured phases
of the real model (:mod:`dnnmap.capture.phases`): prefill of P tokens, and a decode step with
L cached tokens. Generating N tokens is one prefill (its logits give the first token) and
N - 1 decode steps at L = P, P + 1, ..., P + N - 2.

No N graphs are captured: each phase's mapped work is an exact function of (batch, L)
(:mod:`dnnmap.mapping.lengths`) fitted from captures at the corners of the requested range,
and checked against a direct capture at a point not used (``check=True``); a model whose
counts are not of that form there (a sliding window filled inside the range) is captured at
every sampled point instead, and says so. Decode steps are mapped at ``samples`` lengths
spread over the range; the step time between two samples is linear interpolation (it is a
sum of maxima of terms linear in L), summed over every integer L.

The execution mode picks the engine: ``eager`` = Hugging Face ``generate`` (one dispatch per
ATen op, ``DynamicCache``: the cache is concatenated each step); ``compiled`` / ``cudagraph``
= a compiling / serving engine (fused kernels, a ``StaticCache`` written in place; cudagraph
replays each step with one launch).

Memory: weights as stored (:mod:`dnnmap.mapping.weights`), the KV cache of P + N tokens per
sequence, peak live activations (liveness over the prefill and decode graphs,
:mod:`dnnmap.memory`), workspace. A batch that does not fit gets no latency.

>>> r = generate("hf:gpt2", "h100-sxm5", prompt=128, gen=32, batch=[1, 8])   # doctest: +SKIP
>>> r.rows[0].ttft_s > 0, r.max_batch > 8                                      # doctest: +SKIP
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dnnmap.capture.phases import CacheKind, CausalLM, Phase
from dnnmap.costs import count_graph
from dnnmap.errors import DnnmapError
from dnnmap.fusion import partition as fuse
from dnnmap.fusion.partition import Partition
from dnnmap.hardware.schema import HardwareProfile, Precision
from dnnmap.ir import ExecutionMode, Graph, Tf32Mode
from dnnmap.mapping import Device, Estimate, map_works, workload
from dnnmap.mapping.api import resolve_profile
from dnnmap.mapping.lengths import (
    GraphFamily,
    WorkFunction,
    cost_vector,
    mismatches,
    regroup,
    work_vector,
)
from dnnmap.mapping.weights import (
    Storage,
    adjust,
    expert_weight_bytes,
    kv_tensors,
    resident_weight_bytes,
)
from dnnmap.memory import MemoryFit, capacity_bytes, live_bytes, workspace_bytes


@dataclass(frozen=True)
class GenerationRow:
    """One batch size: latencies (None when it does not fit), bounds and memory."""

    batch: int
    memory: MemoryFit
    ttft_s: float | None = None
    tpot_start_s: float | None = None
    tpot_end_s: float | None = None
    e2e_s: float | None = None
    prefill_bound: str = ""
    decode_bound: str = ""
    message: str = ""
    cluster_tokens_per_s: float | None = None  # many devices: decode tokens/s of all replicas (batch / step)

    @property
    def fits(self) -> bool:
        return self.memory.fits

    @property
    def tpot_mean_s(self) -> float | None:
        return None if self.e2e_s is None or self.ttft_s is None else self.decode_s_per_token

    @property
    def decode_s_per_token(self) -> float:
        return (self.e2e_s - self.ttft_s) / max(1, self._steps) if self.e2e_s is not None else 0.0

    _steps: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        return None if not self.e2e_s else self.batch * (self._steps + 1) / self.e2e_s

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "fits": self.fits, "ttft_s": self.ttft_s, "tpot_start_s": self.tpot_start_s,
                "tpot_end_s": self.tpot_end_s, "tpot_mean_s": self.tpot_mean_s, "e2e_s": self.e2e_s,
                "output_tokens_per_s": self.tokens_per_s, "prefill_bound": self.prefill_bound,
                "decode_bound": self.decode_bound, "message": self.message,
                **({"cluster_tokens_per_s": self.cluster_tokens_per_s} if self.cluster_tokens_per_s else {}),
                **self.memory.to_dict()}


@dataclass(frozen=True)
class GenerationReport:
    model: str
    device: str
    prompt: int
    gen: int
    precision: str
    mode: str
    storage: Storage
    rows: tuple[GenerationRow, ...]
    max_batch: int  # largest batch whose memory fits at P + N (0: not even one)
    kv_bytes_per_token: int  # per sequence, all layers, K and V, at the cache dtype
    notes: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def row(self, batch: int) -> GenerationRow:
        return next(r for r in self.rows if r.batch == batch)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "prompt": self.prompt, "gen": self.gen,
                "precision": self.precision, "mode": self.mode, "weights": self.storage.weights,
                "kv_dtype": self.storage.kv_dtype, "max_batch": self.max_batch,
                "kv_bytes_per_token": self.kv_bytes_per_token, "rows": [r.to_dict() for r in self.rows],
                "notes": list(self.notes), "meta": dict(self.meta)}

    def to_dataframe(self):  # noqa: ANN201 - pandas.DataFrame
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])


def capture_dtype(precision: Precision) -> str:
    """Capture at the precision's storage type where torch has one (bytes are restated anyway)."""
    return {Precision.FP32: "fp32", Precision.TF32: "fp32", Precision.FP16: "fp16"}.get(precision, "bf16")


class _Captures:
    """Captures, counts, partitions and restates one phase at (batch, length) points."""

    def __init__(self, lm: CausalLM, cache: CacheKind, strategy: str, precision: Precision, storage: Storage,
                 graphs: dict | None = None) -> None:
        self.lm, self.cache, self.strategy, self.precision, self.storage = lm, cache, strategy, precision, storage
        self._graphs: dict[tuple, Graph] = {} if graphs is None else graphs  # shared by with_storage

    @property
    def count(self) -> int:
        return len(self._graphs)

    def with_storage(self, storage: Storage) -> _Captures:
        """The same captures restated with another ``storage`` (expert parallelism)."""
        return _Captures(self.lm, self.cache, self.strategy, self.precision, storage, self._graphs)

    def graph(self, phase: Phase, b: int, n: int) -> Graph:
        key = (phase, b, n)
        if key not in self._graphs:
            g = self.lm.capture(phase, b, n, self.cache)
            self._graphs[key] = Graph(g.name, g.tensors, g.ops, g.inputs, g.outputs,
                                      {**g.meta, "vocab_size": _vocab(self.lm)})
        return self._graphs[key]

    def works(self, g: Graph, template: Partition | None = None) -> tuple[tuple, Partition]:
        """The graph's kernels (``template``'s op groups when given) restated at the precision."""
        counted = count_graph(g)
        part = regroup(template, counted) if template is not None else fuse(counted, strategy=self.strategy)
        return adjust(part, workload(part, self.precision), self.precision, self.storage), part

    def live(self, g: Graph) -> np.ndarray:
        return np.array(live_bytes(g, self.precision, exclude=tuple(kv_tensors(g))), dtype=np.float64)


class _Peak:
    """Peak live activation bytes at any batch: at every op, the live bytes are linear in the
    batch (every activation's size is), so two corners give each op's line; the peak is their max."""

    def __init__(self, cap: _Captures, lo: tuple[int, Graph], hi: tuple[int, Graph]) -> None:
        (self.b0, g0), (b1, g1) = lo, hi
        self.y0 = cap.live(g0)
        y1 = cap.live(g1) if b1 != self.b0 else self.y0
        self.slope = (y1 - self.y0) / (b1 - self.b0) if b1 != self.b0 else self.y0 / self.b0

    def __call__(self, b: int) -> int:
        return int(round(float((self.y0 + self.slope * (b - self.b0)).max()))) if len(self.y0) else 0


def _vocab(lm: CausalLM) -> int | None:
    v = getattr(lm.config.get_text_config(decoder=True), "vocab_size", None)
    return v if isinstance(v, int) else None


@dataclass
class _Prefill:
    """Prefill at any batch: the graph family over the batch (shapes exact), kernels as at the first corner."""

    family: GraphFamily
    template: Partition
    peak: _Peak
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cap: _Captures, batches: Sequence[int], prompt: int, check: bool) -> _Prefill:
        corners = {b: cap.graph(Phase.PREFILL, b, prompt) for b in sorted({batches[0], batches[-1]})}
        fam = GraphFamily.of({(b, prompt): g for b, g in corners.items()})
        lo, hi = min(corners), max(corners)
        out = cls(fam, cap.works(corners[lo])[1], _Peak(cap, (lo, corners[lo]), (hi, corners[hi])))
        inner = [b for b in batches if b not in corners]
        if check and inner:
            b = inner[len(inner) // 2]
            direct, made = count_graph(cap.graph(Phase.PREFILL, b, prompt)), count_graph(fam.at(b, prompt))
            same = cost_vector(direct) == cost_vector(made)
            out.notes.append(f"prefill: per-op counts at batch {b} from the fitted shapes "
                             f"{'equal' if same else 'DIFFER from'} a direct capture")
        return out

    def at(self, cap: _Captures, b: int, prompt: int) -> tuple[tuple, Partition]:
        return cap.works(self.family.at(b, prompt), self.template)


@dataclass
class _Decode:
    """Decode steps: mapped work bilinear in (batch, L) per segment of L (split where a sliding
    window fills), each segment fitted from its four corner captures."""

    segments: list[tuple[int, int, WorkFunction, Partition]]
    peak: _Peak | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cap: _Captures, batches: Sequence[int], lengths: Sequence[int], check: bool) -> _Decode:
        bs = sorted({batches[0], batches[-1]})
        out = cls([])
        for lo, hi in _segments(cap.lm, lengths[0], lengths[-1]):
            # three corners captured, the fourth built from their shapes (see GraphFamily.of)
            pts = [(bs[0], lo), (bs[-1], lo), (bs[0], hi)]
            graphs = {p: cap.graph(Phase.DECODE, *p) for p in dict.fromkeys(pts)}
            fam = GraphFamily.of(graphs)
            if (bs[-1], hi) not in graphs:
                graphs[(bs[-1], hi)] = fam.at(bs[-1], hi)
            made = {p: cap.works(g) for p, g in graphs.items()}
            wf = WorkFunction.of({p: w for p, (w, _) in made.items()})
            out.segments.append((lo, hi, wf, made[min(made)][1]))
            out.peak = _Peak(cap, (bs[0], graphs[(bs[0], hi)]), (bs[-1], graphs[(bs[-1], hi)]))
        if check:
            out.notes.append(out._check(cap, batches, lengths))
        return out

    def _check(self, cap: _Captures, batches: Sequence[int], lengths: Sequence[int]) -> str:
        b = batches[len(batches) // 2]
        inner = [n for n in lengths if all(n not in (lo, hi) for lo, hi, *_ in self.segments)] or list(lengths)
        n = inner[len(inner) // 2]
        seg = self._segment(n)
        works, _ = cap.works(cap.graph(Phase.DECODE, b, n))
        bad = mismatches(seg[2].fit, (b, n), work_vector(works))
        if bad:
            return (f"decode: counts at B={b}, L={n} are not bilinear in batch and length ({len(bad)} values "
                    "differ from a direct capture)")
        return f"decode: counts at B={b}, L={n} from the fit equal a direct capture, value for value"

    def _segment(self, n: int) -> tuple:
        return next((s for s in self.segments if s[0] <= n <= s[1]), self.segments[-1])

    def at(self, b: int, n: int) -> tuple[tuple, Partition]:
        seg = self._segment(n)
        return seg[2](b, n), seg[3]


def _segments(lm: CausalLM, lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] split where a sliding-window layer stops growing (its cache holds W - 1 or W
    positions from L = W - 1 on, and the cache code changes branch at L = W)."""
    cuts = sorted({c for k in lm.layout if k.window for c in (k.window - 1, k.window) if lo < c <= hi})
    edges, start = [], lo
    for c in cuts:
        edges.append((start, c - 1))
        start = c
    edges.append((start, hi))
    return edges


def _map(works: tuple, part: Partition, device: Device, b: int, mode: ExecutionMode) -> Estimate:
    return map_works(part, works, device, b, 1, mode)


def _decode_lengths(prompt: int, gen: int, samples: int) -> list[int]:
    """Sampled decode contexts over [P, P + N - 2] (both ends included)."""
    lo, hi = prompt, prompt + gen - 2
    if hi < lo:
        return []
    k = max(2, min(samples, hi - lo + 1))
    return sorted({round(lo + (hi - lo) * i / (k - 1)) for i in range(k)})


def _decode_total(lengths: list[int], times: list[float]) -> float:
    """Sum of step times over every integer context, linear between sampled ones."""
    if len(lengths) == 1:
        return times[0]
    grid = np.arange(lengths[0], lengths[-1] + 1)
    return float(np.interp(grid, lengths, times).sum())


def _advice(fit: MemoryFit, int4: MemoryFit | None) -> str:
    need = fit.describe()
    more = f"{fit.devices_needed} such devices"
    if int4 is not None and int4.fits:
        return f"{need}: {more}, or int4 weights ({int4.total / 1e9:.1f} GB)"
    if int4 is not None:
        return f"{need}: {more} (int4 weights would still need {int4.total / 1e9:.1f} GB)"
    return f"{need}: {more}"


def generate(
    model: str, hardware: HardwareProfile | str, prompt: int, gen: int, batch: int | Sequence[int] = 1, *,
    precision: Precision | str = Precision.BF16, mode: ExecutionMode | str = ExecutionMode.CUDAGRAPH,
    weights: str | None = None, group_size: int = 128, kv_dtype: str | None = None,
    capacity_factor: float | None = None, attn_implementation: str | None = None,
    tf32: Tf32Mode | str = Tf32Mode.DEFAULT, host_dispatch_us: float | None = None,
    samples: int = 6, check: bool = False, workspace: int | None = None, parallel: Any = None,
) -> GenerationReport:
    """Predict generating ``gen`` tokens after a ``prompt``-token prompt at each batch size.

    ``parallel``: a :class:`dnnmap.parallel.inference.InferenceParallel` (many devices): each
    phase is mapped tensor-parallel and split into pipeline stages, memory is per device."""
    return generate_plans(model, hardware, prompt, gen, batch, [parallel], precision=precision, mode=mode,
                          weights=weights, group_size=group_size, kv_dtype=kv_dtype, capacity_factor=capacity_factor,
                          attn_implementation=attn_implementation, tf32=tf32, host_dispatch_us=host_dispatch_us,
                          samples=samples, check=check, workspace=workspace)[0]


def generate_plans(
    model: str, hardware: HardwareProfile | str, prompt: int, gen: int, batch: int | Sequence[int],
    parallels: Sequence[Any], *, precision: Precision | str = Precision.BF16,
    mode: ExecutionMode | str = ExecutionMode.CUDAGRAPH, weights: str | None = None, group_size: int = 128,
    kv_dtype: str | None = None, capacity_factor: float | None = None, attn_implementation: str | None = None,
    tf32: Tf32Mode | str = Tf32Mode.DEFAULT, host_dispatch_us: float | None = None, samples: int = 6,
    check: bool = False, workspace: int | None = None,
) -> list[GenerationReport]:
    """:func:`generate` under each of ``parallels`` (None: one device), from one set of captures
    (fitted over the request batches and every plan's micro-batches)."""
    batches = sorted({batch} if isinstance(batch, int) else set(batch))
    if not batches or batches[0] < 1 or prompt < 1 or gen < 1:
        raise DnnmapError(f"prompt, gen and every batch must be >= 1 (got prompt {prompt}, gen {gen}, batch {batches})")
    precision, mode = Precision.parse(precision), ExecutionMode.parse(mode)
    storage = Storage(weights, group_size, kv_dtype, capacity_factor)
    prof = resolve_profile(hardware)
    lm = CausalLM.build(model, capture_dtype(precision), attn_implementation)
    if lm.max_positions is not None and prompt + gen > lm.max_positions:
        raise DnnmapError(f"{model}: prompt {prompt} + {gen} generated tokens = {prompt + gen} positions exceeds "
                          f"the model's max_position_embeddings ({lm.max_positions})")
    if _moe_fp32(lm, precision):
        lm = CausalLM.build(model, "bf16", attn_implementation)
    device = Device.of(prof, precision, tf32)
    if host_dispatch_us is not None:
        device = device.with_host_dispatch(host_dispatch_us * 1e-6)
    cache = CacheKind.DYNAMIC if mode is ExecutionMode.EAGER else CacheKind.STATIC
    cap = _Captures(lm, cache, mode.strategy, precision, storage)
    fitted = sorted({*batches, *(p.micro(b) for p in parallels if p is not None for b in batches)})
    pre = _Prefill.of(cap, fitted, prompt, check)
    lengths = _decode_lengths(prompt, gen, samples)
    dec = _Decode.of(cap, fitted, lengths, check) if lengths else None
    graph = pre.family.template
    weights_b = resident_weight_bytes(graph, precision, storage)
    int4_b = resident_weight_bytes(graph, precision, replace(storage, weights="int4")) \
        if storage.weights != "int4" else None
    full_b = resident_weight_bytes(graph, precision, Storage())
    experts_b = expert_weight_bytes(graph, precision)
    ws = workspace if workspace is not None else workspace_bytes(prof)
    kv_item = storage.kv_itemsize(precision)
    cap_b = capacity_bytes(prof)
    peaks: dict[int, int] = {}
    notes = [*pre.notes, *(dec.notes if dec else ()), *_notes(lm, cache, mode, storage)]
    meta = {"attention": lm.attention, "cache": cache.value, "decode_lengths": lengths, "capture_dtype": lm.dtype,
            "captures": cap.count, "decode_segments": [(lo, hi) for lo, hi, *_ in dec.segments] if dec else []}
    phases: dict[int, tuple] = {1: (cap, pre, dec)}

    def phases_for(ep: int) -> tuple:
        """The phases with ``ep``-way expert parallelism: the same graphs, expert traffic restated."""
        if ep not in phases:
            c = cap.with_storage(replace(storage, expert_parallel=ep))
            phases[ep] = (c, _Prefill.of(c, fitted, prompt, False), _Decode.of(c, fitted, lengths, False) if lengths else None)
        return phases[ep]

    def report(parallel: Any) -> GenerationReport:
        def memory(b: int, w: int) -> MemoryFit:
            mb = parallel.micro(b) if parallel is not None else b  # the activations of one micro-batch live
            if mb not in peaks:
                peaks[mb] = max(pre.peak(mb), dec.peak(mb) if dec and dec.peak else 0)
            fit = MemoryFit(w, peaks[mb], lm.kv_bytes(prompt + gen, b, kv_item), ws, cap_b)
            return parallel.memory(fit, experts_b * w // max(full_b, 1)) if parallel is not None else fit

        rows = []
        for b in batches:
            fit = memory(b, weights_b)
            if not fit.fits:
                alt = memory(b, int4_b) if int4_b is not None else None
                rows.append(GenerationRow(b, fit, message=_advice(fit, alt), _steps=gen - 1))
                continue
            rows.append(_row(*phases_for(parallel.plan.ep if parallel is not None else 1), b, prompt, lengths,
                             device, mode, fit, gen, parallel))
        return GenerationReport(
            model=model, device=prof.name, prompt=prompt, gen=gen, precision=precision.value, mode=mode.value,
            storage=storage, rows=tuple(rows), max_batch=_max_batch(lambda b: memory(b, weights_b).fits),
            kv_bytes_per_token=lm.kv_bytes(1, 1, kv_item), notes=tuple(dict.fromkeys(notes)),
            meta={**meta, **({"parallel": parallel.describe(), "plan": _plan_record(parallel)}
                             if parallel is not None else {})},
        )

    return [report(p) for p in parallels]


def _plan_record(parallel: Any) -> dict[str, Any]:
    p = parallel.plan
    return {"plan": str(p), "devices": p.devices, "dp": p.dp, "tp": p.tp, "pp": p.pp, "ep": p.ep,
            "microbatches": p.microbatches}


def _moe_fp32(lm: CausalLM, precision: Precision) -> bool:
    """Grouped expert matmuls exist only in 16-bit types: capture an fp32 MoE model in bf16."""
    from dnnmap.capture.phases import _moe

    return lm.dtype == "fp32" and _moe(lm.config) is not None


def _row(cap: _Captures, pre: _Prefill, dec: _Decode | None, b: int, prompt: int, lengths: list[int],
         device: Device, mode: ExecutionMode, fit: MemoryFit, gen: int, parallel: Any = None) -> GenerationRow:
    mb = parallel.micro(b) if parallel is not None else b  # a request streams in micro-batches of mb

    def mapped(works: tuple, part: Partition, tokens: int, decode: bool) -> Estimate:
        if parallel is None:
            return _map(works, part, device, b, mode)
        return parallel.run(part, works, lambda w: _map(w, part, device, mb, mode), mb, tokens,
                            device.precision.bytes_per_element, decode=decode)

    first = mapped(*pre.at(cap, mb, prompt), prompt, False)
    if dec is None:
        return GenerationRow(b, fit, first.latency_s, None, None, first.latency_s, first.bound.value, "", _steps=0)
    ests = [mapped(*dec.at(mb, n), 1, True) for n in lengths]
    times = [e.latency_s for e in ests]
    total = first.latency_s + _decode_total(lengths, times)
    bounds = [e.bound.value for e in ests]
    cluster = None
    if parallel is not None:  # decode tokens per second of every replica: its batch per decode step
        rates = [e.meta["parallel"]["throughput_per_s"] for e in ests]
        cluster = float(np.mean(rates))
    return GenerationRow(b, fit, first.latency_s, times[0], times[-1], total, first.bound.value,
                         max(set(bounds), key=bounds.count), cluster_tokens_per_s=cluster, _steps=gen - 1)


def _max_batch(fits: Any, limit: int = 1 << 20) -> int:
    """Largest batch for which ``fits(batch)`` holds (memory grows with the batch)."""
    if not fits(1):
        return 0
    hi = 1
    while hi < limit and fits(hi * 2):
        hi *= 2
    lo, hi = hi, min(hi * 2, limit)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _notes(lm: CausalLM, cache: CacheKind, mode: ExecutionMode, storage: Storage) -> list[str]:
    out = [f"decode reads a {cache.value} KV cache ({'torch.cat per step, as HF generate' if cache is CacheKind.DYNAMIC else 'written in place, as compiled / serving engines'})"]
    windows = {k.window for k in lm.layout if k.window is not None}
    if windows:
        out.append(f"sliding-window layers keep at most {min(windows)} positions")
    if storage.weights:
        out.append(f"weights stored as {storage.weights}" + (f" (group {storage.group_size})" if storage.weights == "int4" else "")
                   + ", dequantized in the matmul kernels (matmuls at the compute precision)")
    if storage.capacity_factor is not None:
        out.append(f"experts padded to capacity factor {storage.capacity_factor}")
    return out
