"""A parallel plan: data / tensor / pipeline / expert degrees, micro-batches, ZeRO stage.

Devices are ranked Megatron's way: tensor-parallel ranks innermost (consecutive devices, so
a TP group stays inside a node), then data-parallel, then pipeline stages.

>>> p = ParallelPlan(dp=2, tp=4, pp=2, microbatches=8)
>>> p.devices, p.tp_span, p.dp_span, str(p)
(16, 4, 8, 'dp2-tp4-pp2-mb8-zero0')
>>> round(p.bubble_fraction, 4) == round((2 - 1) / (8 + 2 - 1), 4)
True
"""

from __future__ import annotations

from dataclasses import dataclass

from dnnmap.errors import DnnmapError


@dataclass(frozen=True)
class ParallelPlan:
    dp: int = 1
    tp: int = 1
    pp: int = 1
    microbatches: int = 1
    zero: int = 0  # ZeRO stage 0-3 (sharding over the data-parallel group)
    ep: int = 1  # expert parallelism (MoE): experts split over ep of the dp ranks

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def tp_span(self) -> int:
        return self.tp

    @property
    def dp_span(self) -> int:
        return self.dp * self.tp

    def experts_per_device(self, experts: int) -> int:
        """Experts each device holds: ``E / ep``."""
        return experts // self.ep

    @property
    def bubble_fraction(self) -> float:
        """1F1B's idle share: ``(p - 1) / (m + p - 1)``."""
        return (self.pp - 1) / (self.microbatches + self.pp - 1)

    def __str__(self) -> str:
        s = f"dp{self.dp}-tp{self.tp}-pp{self.pp}-mb{self.microbatches}-zero{self.zero}"
        return s + (f"-ep{self.ep}" if self.ep > 1 else "")

    def check(self, *, devices: int | None = None, batch: int | None = None, heads: int | None = None,
              layers: int | None = None, kv_heads: int | None = None, experts: int | None = None) -> None:
        """Raise :class:`DnnmapError` naming the first constraint the plan breaks."""
        for name in ("dp", "tp", "pp", "microbatches", "ep"):
            if getattr(self, name) < 1:
                raise DnnmapError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.zero not in (0, 1, 2, 3):
            raise DnnmapError(f"ZeRO stage must be 0, 1, 2 or 3, got {self.zero}")
        if devices is not None and self.devices != devices:
            raise DnnmapError(f"dp x tp x pp = {self.dp} x {self.tp} x {self.pp} = {self.devices} "
                              f"does not use the {devices} devices asked for")
        if heads is not None and heads % self.tp:
            raise DnnmapError(f"tp={self.tp} does not divide the {heads} attention heads")
        if kv_heads is not None and kv_heads % self.tp and self.tp % kv_heads:
            raise DnnmapError(f"tp={self.tp} does not divide the {kv_heads} key/value heads")
        if layers is not None and self.pp > layers:
            raise DnnmapError(f"pp={self.pp} is larger than the {layers} layers")
        if batch is not None and batch % (self.dp * self.microbatches):
            raise DnnmapError(f"global batch {batch} is not divisible by dp x microbatches = "
                              f"{self.dp} x {self.microbatches}")
        if experts is not None and experts % self.ep:
            raise DnnmapError(f"ep={self.ep} does not divide the {experts} experts")
        if self.dp % self.ep:
            raise DnnmapError(f"ep={self.ep} does not divide dp={self.dp}: experts are split over data-parallel "
                              "replicas (ep x tp x pp devices at least)")
        if self.pp == 1 and self.microbatches > 1 and self.zero >= 2:
            pass  # gradient accumulation with sharded gradients: allowed, reduce-scatter per micro-batch
