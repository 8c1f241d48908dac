"""KPU mapper by hand: tiles allocated, padding, wavefront, scratchpad spills."""

from __future__ import annotations

import math

import pytest

from dnnmap.fusion.partition import Parallelism
from dnnmap.hardware import load_profile
from dnnmap.ir import OpClass
from dnnmap.mapping import Device
from dnnmap.mapping.engine import estimate, weights_home
from dnnmap.mapping.kpu import place
from dnnmap.mapping.workload import Work


def gemm(m: int, n: int, k: int, internal: int = 0) -> Work:
    return Work(0, "gemm", OpClass.MATMUL, 2 * m * n * k, 0, 0, m * k, k * n, m * n, internal,
                Parallelism(output_elements=m * n, reduction=k, gemm_m=m, gemm_n=n, gemm_k=k), True)


@pytest.fixture(scope="module")
def t100():
    return load_profile("kpu-t100")


def test_tiles_padding_wavefront(t100) -> None:
    k = t100.kpu
    p = place(gemm(100, 100, 256), Device.of(t100, "int8"))
    blocks = math.ceil(100 / k.pe_rows) * math.ceil(100 / k.pe_cols)
    assert p.units_allocated == min(k.tiles, blocks)
    assert p.factors["quantization"] == pytest.approx(blocks / (k.tiles * math.ceil(blocks / k.tiles)))
    assert p.factors["padding"] == pytest.approx(100 * 100 / (math.ceil(100 / k.pe_rows) * k.pe_rows * math.ceil(100 / k.pe_cols) * k.pe_cols))
    assert p.factors["wavefront"] == pytest.approx(256 / (256 + k.pe_rows + k.pe_cols))
    assert p.spill_bytes == 0 and "fits" in p.detail


def test_working_set_beyond_the_scratchpads_spills(t100) -> None:
    k = t100.kpu
    dev = Device.of(t100, "int8")
    w = gemm(32, 32, 4096, internal=4 << 20)  # one block on one tile, 4 MiB of fused intermediates
    p = place(w, dev)
    assert p.units_allocated == 1
    excess = w.working_set_bytes - k.scratchpad_per_tile_bytes
    assert p.spill_bytes == 2 * excess
    est = estimate(w, p, dev, weights_home(dev, (w,)))
    dram = next(t for t in est.traffic if t.level == t100.dram.name)
    assert dram.bytes == w.external_bytes + 2 * excess
