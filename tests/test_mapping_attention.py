"""FlashAttention-2 tiling of fused attention on GPUs (dnnmap.mapping.attention), by hand."""

from __future__ import annotations

import math

import pytest

from dnnmap.costs.rules.attention import AttentionGeometry
from dnnmap.fusion.parallelism import AttentionParallelism
from dnnmap.hardware import load_profile
from dnnmap.ir import OpClass
from dnnmap.mapping.attention import (
    FA2_WARPS,
    SFU_OPS_PER_CLK_PER_SM,
    block_sizes,
    causal_pairs,
    flash_tiling,
    place_flash,
)
from dnnmap.mapping.device import Device
from dnnmap.mapping.engine import estimate, weights_home
from dnnmap.mapping.gpu import REG_OVERHEAD, _gemm, place
from dnnmap.mapping.workload import Work

H100 = load_profile("h100-sxm5")


def attn_work(s: int, d: int, *, causal: bool = False, b: int = 1, h: int = 32, kv_heads: int | None = None,
              skv: int | None = None, elem: int = 2) -> Work:
    """A fused SDPA subgraph as the cost rule counts it: the full square, GQA included."""
    skv = skv or s
    geom = AttentionGeometry(batch=b, q_heads=h, kv_heads=kv_heads or h, q_len=s, kv_len=skv, head_dim=d,
                             v_head_dim=d, causal=causal)
    flops = 2 * b * h * s * skv * d * 2  # Q K^T and P V (torch.utils.flop_counter.sdpa_flop_count)
    scores = b * h * s * skv
    q_bytes, kv_bytes = b * h * s * d * elem, b * (kv_heads or h) * skv * d * elem
    par = AttentionParallelism(batch=b, heads=h, spatial=s, channels=d, output_elements=b * h * s * d,
                               reduction=skv, gemm_m=s, gemm_n=skv, gemm_k=d, gemm_batch=b * h, attention=geom)
    return Work(0, "sdpa", OpClass.ATTENTION, flops, 7 * scores, scores, q_bytes + 2 * kv_bytes, 0, q_bytes, 0,
                par, True)


def bf16(profile=H100) -> Device:
    return Device.of(profile, "bf16")


def test_causal_block_counts_by_hand() -> None:
    # Sq = Skv = 1024, Br = Bc = 128: 8 query blocks; non-causal 8 x 8 = 64 pairs, causal
    # 1 + 2 + ... + 8 = 8 * 9 / 2 = 36
    assert causal_pairs(1024, 1024, 128, 128) == 36
    n = 8
    assert 36 / 64 == (n + 1) / (2 * n)
    # Br = 128, Bc = 64: query block i runs 2(i + 1) KV blocks -> 2 * 36 = 72 of 8 * 16 = 128
    assert causal_pairs(1024, 1024, 128, 64) == 72
    # ragged: Sq = Skv = 200, Br = Bc = 128 -> block 0 sees keys 0..127 (1 block), block 1 rows
    # 128..199 see keys 0..199 (2 blocks)
    assert causal_pairs(200, 200, 128, 128) == 3
    # a short query against a long cache (top-left aligned, as PyTorch's is_causal): 1 block
    assert causal_pairs(128, 4096, 128, 128) == 1


def test_block_sizes_follow_fa2_launch_table_on_h100() -> None:
    gpu = H100.gpu
    # d = 64: 128 x 128; smem 2 B x (128*64 + 128*64 + 128*64) = 49152;
    # registers (128*128 + 128*64) / 128 threads + 40 = 192 + 40 = 232 <= 255
    assert block_sizes(64, 64, 2, gpu.shared_mem_per_block_bytes, 32) == (128, 128, 49152, 232)
    # d = 128: 128 x 128 needs (16384 + 16384) / 128 + 40 = 296 registers > 255 -> 128 x 64:
    # smem 2 x (128*128 + 64*128 + 64*128) = 65536, registers (8192 + 16384) / 128 + 40 = 232
    assert block_sizes(128, 128, 2, gpu.shared_mem_per_block_bytes, 32) == (128, 64, 65536, 232)
    # d = 160: 128 x 64 needs (8192 + 20480) / 128 + 40 = 264 -> 128 x 32 (FA2's A100/H100 choice)
    assert block_sizes(160, 160, 2, gpu.shared_mem_per_block_bytes, 32)[:2] == (128, 32)
    assert FA2_WARPS * 32 == 128 and REG_OVERHEAD == 40


def test_grid_residency_and_waves() -> None:
    # b=1, h=32, S=4096, d=128 on H100: 128 x 64 tiles -> 32 query blocks, 64 KV steps,
    # 32 * 32 = 1024 blocks; resident = min(32 blocks, 233472 // 65536 = 3 (smem),
    # 2048 // 128 = 16 (threads), 65536 // (128 * 232) = 2 (registers)) = 2;
    # waves = ceil(1024 / (132 * 2)) = 4
    geom = attn_work(4096, 128).parallelism.attention
    t = flash_tiling(geom, H100.gpu, 2)
    assert (t.br, t.bc, t.q_blocks, t.kv_blocks) == (128, 64, 32, 64)
    assert t.blocks == 1024 and t.resident == 2 and t.waves == 4
    assert t.pairs == 32 * 64


def test_causal_halves_executed_flops() -> None:
    dev = bf16()
    s, d, h = 1024, 64, 32  # d = 64 -> 128 x 128 tiles: 64 pairs vs 36
    full = place_flash(attn_work(s, d), dev, H100.gpu)
    causal = place_flash(attn_work(s, d, causal=True), dev, H100.gpu)
    per_pair = 2 * 128 * 128 * d + 2 * 128 * 128 * d  # S = Q K^T and O += P V per block pair
    assert full.factors["executed_tensor_flops"] == h * 64 * per_pair == 4 * h * s * s * d
    assert causal.factors["executed_tensor_flops"] == h * 36 * per_pair
    assert causal.factors["executed_ratio"] == pytest.approx(9 / 16)  # (n + 1) / (2n), n = 8
    assert "causal: 36/64 KV blocks" in causal.detail

    # compute time: softmax scales with the pairs; the MMA time with pairs + 2 per query block
    # (pipeline = pairs / (pairs + 2 * q_blocks)); S = 4096, d = 128: 1056 of 2048 pairs
    full, causal = place_flash(attn_work(4096, 128), dev, H100.gpu), place_flash(attn_work(4096, 128, causal=True),
                                                                                  dev, H100.gpu)
    assert causal.factors["block_pairs"] == sum(min(64, 2 * (i + 1)) for i in range(32)) == 1056
    assert causal.factors["softmax_s"] / full.factors["softmax_s"] == pytest.approx(1056 / 2048)
    assert causal.factors["matmul_s"] / full.factors["matmul_s"] == pytest.approx((1056 + 64) / (2048 + 64))


def test_long_sequences_escape_the_head_dim_gemm_cap() -> None:
    dev = bf16()
    w = attn_work(4096, 128)
    p = place_flash(w, dev, H100.gpu)
    # 1024 blocks on 132 SMs: quantization 1024 / (132 * 8); pipeline 2048 / (2048 + 64);
    # 2 resident x 128 x 64 = 16384 outputs in flight: full rate
    q, pipe = 1024 / (132 * 8), 2048 / (2048 + 64)
    assert p.factors["quantization"] == pytest.approx(q)
    assert p.factors["pipeline"] == pytest.approx(pipe)
    assert p.factors["matmul_efficiency"] == pytest.approx(q * pipe)
    assert p.factors["matmul_efficiency"] > 0.5
    # the GEMM view (K = head_dim = 128: 2 K steps -> pipeline 2 / 4) is capped at 50 %
    assert _gemm(w, dev, H100.gpu).utilization <= 0.5
    # longer sequences: more KV steps per block, a better pipeline
    short = place_flash(attn_work(512, 128), dev, H100.gpu)
    assert short.factors["matmul_efficiency"] < p.factors["matmul_efficiency"]
    assert place(w, dev).detail.startswith("FlashAttention-2 tiling")


def test_softmax_on_the_sfu_by_hand() -> None:
    dev = bf16()
    p = place_flash(attn_work(4096, 128), dev, H100.gpu)
    # per step: 128*64 + 128 exp2 on 16 SFU lanes per SM = 520 cycles; FP32: 3*128*64 + 128*128 =
    # 40960 ops on 128 lanes = 320 cycles -> the SFU sets it: 520 cycles per step
    cycles = max((128 * 64 + 128) / SFU_OPS_PER_CLK_PER_SM, (3 * 128 * 64 + 128 * 128) / 128)
    assert cycles == 520
    clock = H100.clocks.boost_mhz * 1e6
    softmax = 32 * 2048 * cycles / (clock * 132 * (1024 / (132 * 8)))
    assert p.factors["softmax_s"] == pytest.approx(softmax)


def test_head_dim_matters() -> None:
    dev = bf16()
    d64 = place_flash(attn_work(4096, 64, h=64), dev, H100.gpu)  # same FLOPs as 32 heads of 128
    d128 = place_flash(attn_work(4096, 128), dev, H100.gpu)
    assert (d64.factors["br"], d64.factors["bc"]) == (128, 128)
    assert (d128.factors["br"], d128.factors["bc"]) == (128, 64)
    # one exp per score either way, but half the matmul FLOPs per score at d = 64: the softmax
    # takes a larger share of the kernel
    share = {d: p.factors["softmax_s"] / (p.factors["softmax_s"] + p.factors["matmul_s"])
             for d, p in ((64, d64), (128, d128))}
    assert share[64] > share[128]


def test_gqa_grid_counts_query_heads() -> None:
    dev = bf16()
    mha = place_flash(attn_work(2048, 128, h=32), dev, H100.gpu)
    gqa = place_flash(attn_work(2048, 128, h=32, kv_heads=8), dev, H100.gpu)
    # every query head still gets its own blocks and runs the same MMAs
    assert gqa.factors["blocks"] == mha.factors["blocks"] == 32 * math.ceil(2048 / 128)
    assert gqa.factors["executed_tensor_flops"] == mha.factors["executed_tensor_flops"]
    assert "[8 KV heads]" in gqa.detail


def test_fp32_without_tf32_falls_back_to_the_gemm_path() -> None:
    dev = Device.of(H100, "fp32")
    w = attn_work(1024, 64, elem=4)
    assert place_flash(w, dev, H100.gpu) is None
    assert "FlashAttention" not in place(w, dev).detail


def test_engine_prices_causal_faster() -> None:
    dev = bf16()
    home = weights_home(dev, ())
    full = attn_work(2048, 128, b=4)
    causal = attn_work(2048, 128, b=4, causal=True)
    e_full = estimate(full, place(full, dev), dev, home)
    e_causal = estimate(causal, place(causal, dev), dev, home)
    assert e_causal.compute_s < 0.6 * e_full.compute_s
    assert "causal" in e_causal.explanation
