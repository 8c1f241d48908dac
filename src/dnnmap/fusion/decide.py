"""The fusion decision: one function, :func:`should_fuse`, says whether two groups become one
kernel and why. Proposals (``propose.py``) only suggest pairs; applying (``groups.py``) only
checks legality (no cycle). Every rule below names what a real compiler does.

>>> a = GroupSummary(root=0, n_template=1, template_classes=frozenset({"conv"}))
>>> b = GroupSummary(root=1, n_pointwise=2)
>>> should_fuse(a, b, FusionContext(Strategy.COMPILER, Relation.VERTICAL)).reason
'pointwise epilogue into the GEMM/conv'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from dnnmap.fusion.partition import Strategy


class Relation(StrEnum):
    VERTICAL = "vertical"  # a produces what b reads
    HORIZONTAL = "horizontal"  # a and b read the same tensor, neither needs the other


class Pattern(StrEnum):
    """A proposal recognised as a whole; the decision knows which pattern it is judging."""

    VIEW_FOLD = "view_fold"  # a view joins its reader (or writer): never a kernel
    ATTENTION_CORE = "attention_core"  # QK^T -> scale/mask -> softmax -> .V
    HORIZONTAL_GEMM = "horizontal_gemm"  # Q/K/V (or gate/up) projections of one input
    SQUEEZE_EXCITE = "squeeze_excite"  # pool -> fc -> act -> fc -> gate
    DEAD_CODE = "dead_code"  # a result nobody reads: no kernel (kept in a neighbour for the count)


@dataclass(frozen=True)
class FusionConfig:
    """Knobs of the ``compiler`` strategy (defaults model Inductor / XLA on a GPU)."""

    attention_core: bool = True  # flash-attention style core (Inductor, XLA, cuDNN all do it)
    # Pointwise epilogues into GEMM / conv / attention kernels (XLA, TensorRT, Inductor's
    # Triton templates). False models Inductor's default on a CPU: GEMMs and convs are
    # library calls (oneDNN / MKL) that take no epilogue, the pointwise work is a kernel of
    # its own (see ``INDUCTOR_DEFAULT``).
    gemm_epilogues: bool = True
    horizontal_gemm: bool = True  # one GEMM for projections sharing an input (TensorRT, XLA)
    squeeze_excite: bool = True  # the SE squeeze (pool..gate) as one small kernel
    # A row-wise normalization (layer-norm / RMS-norm, reducing only the last dim) may join
    # the GEMM group that produces its input when the row has at most this many elements:
    # the GEMM output tile then spans the whole row (TensorRT-LLM / FasterTransformer fuse
    # bias + residual + norm after the GEMM; CUTLASS example 37 does it in the epilogue).
    # 0 disables it; Inductor itself emits the norm as a separate kernel.
    norm_epilogue_max_row: int = 8192
    # A pointwise / reduction result that more than this many kernels read stays in a
    # kernel of its own (rotary tables and attention masks shared by every layer): fusing it
    # into the first reader would save one read of a tensor that is written anyway.
    max_shared_fanout: int = 2
    max_rounds: int = 10  # rounds of pairwise fusion (Inductor: 10)


INDUCTOR_DEFAULT = FusionConfig(
    gemm_epilogues=False, horizontal_gemm=False, squeeze_excite=False, norm_epilogue_max_row=0
)
"""The ``compiler`` strategy restricted to what Inductor does by default (no max-autotune
templates, no freezing): library GEMMs / convs / SDPA, everything else fused around them."""


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """What the decision needs to know about one group of ops (a would-be kernel)."""

    root: int
    n_template: int = 0  # GEMM / conv / attention ops
    n_reduction: int = 0
    n_pointwise: int = 0  # pointwise and source ops
    n_opaque: int = 0
    template_classes: frozenset[str] = frozenset()  # OpClass values of the template ops
    weight_gemms_only: bool = False  # every template is a GEMM with a static weight operand
    reduction_domains: frozenset[tuple[int, int]] = frozenset()  # (rows, row length)
    row_wise: bool = True  # every reduction reduces the last dim only
    max_row: int = 0
    follower_only: bool = False  # only elementwise / normalization ops (greedy followers)


class FusionOracle(Protocol):
    """Facts about the current grouping that a decision may ask for (implemented by the fuser)."""

    def working_set(self, a: int, b: int) -> int: ...
    def epilogue_single_consumer(self, a: int, b: int) -> bool: ...
    def fanout(self, a: int) -> int: ...
    def fanin(self, b: int) -> int: ...
    def shared_readers(self, a: int, b: int) -> int: ...
    def sealed(self, a: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class FusionDecision:
    fuse: bool
    reason: str

    def __bool__(self) -> bool:
        return self.fuse


def yes(reason: str) -> FusionDecision:
    return FusionDecision(True, reason)


def no(reason: str) -> FusionDecision:
    return FusionDecision(False, reason)


@dataclass(frozen=True)
class FusionContext:
    strategy: Strategy
    relation: Relation
    pattern: Pattern | None = None
    config: FusionConfig = field(default_factory=FusionConfig)
    onchip_budget_bytes: int | None = None
    oracle: FusionOracle | None = None


def should_fuse(a: GroupSummary, b: GroupSummary, ctx: FusionContext) -> FusionDecision:
    """Whether groups ``a`` and ``b`` (``a`` the producer when vertical) become one kernel.

    Order of the checks: views always fold; opaque ops and sealed kernels never fuse; the
    strategy's rule; finally the on-chip budget (a merged working set that does not fit is
    refused whatever the rule said).
    """
    if ctx.pattern is Pattern.VIEW_FOLD:
        return yes("view folded into its neighbour (moves no bytes)")
    if a.n_opaque or b.n_opaque:
        return no("opaque op: no fusion rule")
    if ctx.oracle is not None and (ctx.oracle.sealed(a.root) or ctx.oracle.sealed(b.root)):
        return no("closed kernel (squeeze-excitation)")
    if ctx.strategy is Strategy.UNFUSED:
        return no("unfused strategy")
    rule = _greedy_rule if ctx.strategy is Strategy.GREEDY else _compiler_rule
    decision = rule(a, b, ctx)
    if decision and ctx.onchip_budget_bytes is not None and ctx.oracle is not None:
        ws = ctx.oracle.working_set(a.root, b.root)
        if ws > ctx.onchip_budget_bytes:
            return no("working set exceeds the on-chip budget")
    return decision


def _greedy_rule(a: GroupSummary, b: GroupSummary, ctx: FusionContext) -> FusionDecision:
    """Classic sequential fusion: a chain grows producer -> consumer while the producer has
    one consumer, the consumer one producer, and the consumer is a follower (elementwise
    activation / arithmetic, batch- or layer-norm). A GEMM, conv, pool or softmax starts a new
    chain, which yields Conv+BN+ReLU(6), Conv+BN, Add+ReLU and Linear+activation."""
    if ctx.relation is not Relation.VERTICAL:
        return no("greedy fuses producer -> consumer only")
    if ctx.oracle is not None and ctx.oracle.fanout(a.root) != 1:
        return no("fork: the producer has several consumers")
    if ctx.oracle is not None and ctx.oracle.fanin(b.root) != 1:
        return no("join: the consumer has several producers")
    if not b.follower_only:
        return no("consumer is not an elementwise/normalization follower")
    return yes("greedy chain")


def _compiler_rule(a: GroupSummary, b: GroupSummary, ctx: FusionContext) -> FusionDecision:
    """What Inductor / XLA do (see docs/fusion.md for the mapping to their passes)."""
    n_templates = a.n_template + b.n_template
    if ctx.pattern is Pattern.ATTENTION_CORE:
        if n_templates <= 2:
            return yes("attention core: QK^T, softmax and .V in one kernel")
        return no("attention core holds two GEMMs at most")
    if ctx.pattern is Pattern.HORIZONTAL_GEMM:
        if a.weight_gemms_only and b.weight_gemms_only and not (a.n_reduction or b.n_reduction):
            return yes("horizontal GEMM fusion: projections of one input")
        return no("horizontal fusion joins weight GEMMs only")
    if ctx.pattern is Pattern.SQUEEZE_EXCITE:
        return yes("squeeze-excitation: pool, fc, act, fc, gate in one kernel")
    if ctx.pattern is Pattern.DEAD_CODE:
        return yes("dead code: eliminated by the compiler (kept in a neighbour for the count)")
    if ctx.relation is not Relation.VERTICAL:
        return no("no horizontal fusion outside the GEMM pattern")
    if a.n_template and b.n_template:
        return no("GEMM/conv into GEMM/conv: not fused")
    if b.n_template:
        return no("a GEMM/conv takes no fused prologue")
    if a.n_template:
        if not ctx.config.gemm_epilogues:
            return no("GEMM/conv is a library call: no fused epilogue")
        return _epilogue_rule(a, b, ctx)
    if ctx.oracle is not None and ctx.oracle.shared_readers(a.root, b.root) > ctx.config.max_shared_fanout:
        return no("shared producer feeds many kernels: computed once, on its own")
    if a.n_reduction and b.n_reduction and len(a.reduction_domains | b.reduction_domains) > 1:
        return no("reductions over different domains")
    return yes("pointwise/reduction loop fusion")


def _epilogue_rule(a: GroupSummary, b: GroupSummary, ctx: FusionContext) -> FusionDecision:
    if ctx.oracle is not None and not ctx.oracle.epilogue_single_consumer(a.root, b.root):
        return no("GEMM/conv result also read elsewhere (single-consumer epilogues only)")
    if not b.n_reduction:
        return yes("pointwise epilogue into the GEMM/conv")
    limit = ctx.config.norm_epilogue_max_row
    if (a.template_classes <= {"matmul"} and b.row_wise and 0 < b.max_row <= limit
            and len(b.reduction_domains) == 1):
        return yes("row-wise normalization epilogue (GEMM tile spans the row)")
    return no("reduction after a GEMM/conv starts a new kernel")
