"""TPU mapper by hand: systolic padding, MXUs used, streaming fill, VPU lane fill."""

from __future__ import annotations

import math

import pytest

from dnnmap.fusion.partition import Parallelism
from dnnmap.hardware import load_profile
from dnnmap.ir import OpClass
from dnnmap.mapping import Device
from dnnmap.mapping.tpu import VPU_LANES, place
from dnnmap.mapping.workload import Work


def gemm(m: int, n: int, k: int) -> Work:
    return Work(0, "gemm", OpClass.MATMUL, 2 * m * n * k, 0, 0, m * k * 2, k * n * 2, m * n * 2, 0,
                Parallelism(output_elements=m * n, reduction=k, gemm_m=m, gemm_n=n, gemm_k=k), True)


@pytest.fixture(scope="module")
def v4():
    return load_profile("tpu-v4")


def test_batch1_fc_layer_pads_and_streams_one_row(v4) -> None:
    dev = Device.of(v4, "bf16")
    rows, cols, mxus = v4.tpu.mxu_rows, v4.tpu.mxu_cols, v4.tpu.mxus
    p = place(gemm(1, 1000, 512), dev)  # ResNet fc at batch 1
    blocks = math.ceil(512 / rows) * math.ceil(1000 / cols)
    assert p.factors["blocks"] == blocks
    assert p.factors["padding"] == pytest.approx(512 * 1000 / (math.ceil(512 / rows) * rows * math.ceil(1000 / cols) * cols))
    assert p.factors["quantization"] == pytest.approx(blocks / (mxus * math.ceil(blocks / mxus)))
    assert p.factors["streaming"] == pytest.approx(1 / (1 + rows))
    assert p.units_allocated == min(mxus, blocks)
    assert p.utilization < 0.01


def test_small_channel_conv_fills_a_quarter_of_the_array(v4) -> None:
    p = place(gemm(56 * 56, 64, 64), Device.of(v4, "bf16"))
    assert p.factors["padding"] == pytest.approx(64 * 64 / (v4.tpu.mxu_rows * v4.tpu.mxu_cols))
    assert p.units_allocated == 1  # one weight block -> one MXU of eight


def test_vector_work_lane_fill(v4) -> None:
    w = Work(0, "relu", OpClass.ELEMENTWISE, 0, 32 * 3136, 0, 32 * 3136 * 2, 0, 32 * 3136 * 2, 0,
             Parallelism(channels=32, spatial=3136, output_elements=32 * 3136), False)
    p = place(w, Device.of(v4, "bf16"))
    assert p.utilization == pytest.approx(32 / VPU_LANES)
    assert p.vector_rate == pytest.approx(v4.vector_peak_tflops["bf16"] * 1e12 * 32 / VPU_LANES)
