"""Memory of a training step, from the captured graph (liveness, not a formula).

- **weights**: every parameter, at its captured dtype (fp32 master weights under AMP);
- **gradients**: the parameter gradients backward produces (exact tensors of the graph);
- **optimizer state**: the state tensors the optimizer's first step created
  (``exp_avg`` / ``exp_avg_sq`` / ``step`` for Adam, ``momentum_buffer`` for SGD);
- **saved for backward**: storage produced by forward / loss and read by backward;
- **peak**: weights + optimizer state + the most transient storage alive at once when the
  ops run in captured order (a storage lives from its producer to its last reader, through
  views and in-place updates; a gradient nobody reads lives to the end of the step).

>>> m = StepMemory(weights=4, gradients=4, optimizer_state=8, saved_activations=10, peak=30)
>>> m.persistent, m.fits(32), m.fits(29)
(16, True, False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dnnmap.ir import Graph, Role
from dnnmap.training.phases import phase_of

OPTIMIZER_STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "step")


@dataclass(frozen=True)
class StepMemory:
    """Bytes per device of one training step (see the module docstring)."""

    weights: int
    gradients: int
    optimizer_state: int
    saved_activations: int
    peak: int

    @property
    def persistent(self) -> int:
        """What lives between steps: weights, gradients, optimizer state."""
        return self.weights + self.gradients + self.optimizer_state

    def fits(self, capacity_bytes: int) -> bool:
        return self.peak <= capacity_bytes

    def scaled(self, weights: float = 1.0, gradients: float = 1.0, state: float = 1.0,
               activations: float = 1.0) -> StepMemory:
        """Sharded per device (ZeRO, tensor / pipeline parallelism): each part times its factor;
        the peak's parts move with them."""
        w, g, s, a = (round(x * f) for x, f in ((self.weights, weights), (self.gradients, gradients),
                                                 (self.optimizer_state, state), (self.saved_activations, activations)))
        rest = max(self.peak - self.weights - self.optimizer_state - self.gradients - self.saved_activations, 0)
        return StepMemory(w, g, s, a, w + s + g + a + round(rest * activations))

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "persistent": self.persistent}


def _root(g: Graph, tid: str) -> str:
    t = g.tensors[tid]
    seen = {tid}
    while t.alias_of is not None and t.alias_of in g.tensors and t.alias_of not in seen:
        seen.add(t.alias_of)
        t = g.tensors[t.alias_of]
    return t.id


def step_memory(g: Graph) -> StepMemory:
    """The :class:`StepMemory` of a captured training step."""
    phase = phase_of(g)
    weights = sum(t.nbytes for t in g.iter_tensors(Role.WEIGHT))
    state = sum(t.nbytes for t in g.iter_tensors(Role.BUFFER) if t.name.rpartition(".")[2] in OPTIMIZER_STATE_KEYS)
    n = len(g.ops)
    born: dict[str, int] = {}
    last: dict[str, int] = {}
    made_in: dict[str, str] = {}
    read_by_backward: set[str] = set()
    for i, op in enumerate(g.ops):
        for tid in op.inputs:
            r = _root(g, tid)
            if r in born:
                last[r] = i
                if phase.get(op.id) == "backward":
                    read_by_backward.add(r)
        for tid in op.outputs:
            r = _root(g, tid)
            if r == tid and g.tensors[tid].producer is not None:
                born[r], last[r], made_in[r] = i, i, phase.get(op.id, "")
    saved = sum(g.tensors[r].nbytes for r in read_by_backward if made_in[r] in ("forward", "loss"))
    grads = _gradient_bytes(g, born, made_in)
    for r in born:  # a gradient nobody reads (no optimizer step) lives to the end
        if made_in[r] == "backward" and last[r] == born[r]:
            last[r] = n
    delta = [0] * (n + 2)
    for r, i in born.items():
        delta[i] += g.tensors[r].nbytes
        delta[last[r] + 1] -= g.tensors[r].nbytes
    live = peak = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return StepMemory(weights, grads, state, saved, weights + state + peak)


def _gradient_bytes(g: Graph, born: dict[str, int], made_in: dict[str, str]) -> int:
    """Backward storage shaped like a parameter and read by the optimizer (or by nobody):
    the parameter gradients. Falls back to the weights' size when no optimizer ran."""
    phase = phase_of(g)
    read_by_opt: set[str] = set()
    for op in g.ops:
        if phase.get(op.id) == "optimizer":
            read_by_opt.update(_root(g, t) for t in op.inputs)
    grads = sum(g.tensors[r].nbytes for r in born if made_in[r] == "backward" and r in read_by_opt)
    if grads == 0:
        return sum(t.nbytes for t in g.iter_tensors(Role.WEIGHT))
    return grads
