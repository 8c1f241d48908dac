"""Architectures that refuse SDPA (Bloom, Mamba) are built with their own eager attention, whatever
the error text of the transformers version says; what ran is recorded in the graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnnmap.capture import capture
from dnnmap.costs import count_graph

TINY = {
    "bloom": {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "n_layer": 2, "hidden_size": 64,
              "n_head": 4, "vocab_size": 128},
    "mamba": {"model_type": "mamba", "architectures": ["MambaForCausalLM"], "num_hidden_layers": 2,
              "hidden_size": 64, "state_size": 8, "vocab_size": 128},
    # encoder-decoder with MoE: also needs decoder inputs (the decoder reads the same ids)
    "switch": {"model_type": "switch_transformers", "architectures": ["SwitchTransformersForConditionalGeneration"],
               "num_layers": 2, "num_decoder_layers": 2, "d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4,
               "num_experts": 4, "vocab_size": 128},
}


@pytest.mark.parametrize("arch", sorted(TINY))
def test_sdpa_refused_falls_back_to_eager(arch: str, tmp_path: Path) -> None:
    cfg = tmp_path / f"{arch}.json"
    cfg.write_text(json.dumps(TINY[arch]))
    g = capture(f"hf:{cfg}", seq_len=16, attn_implementation="sdpa")
    assert g.meta["attention"] == "eager"
    counted = count_graph(g)
    assert counted.ledger.complete and counted.total.flops > 0
    assert not any("scaled_dot_product" in op.target for op in g.ops)
    if arch == "switch":  # encoder and decoder both ran
        paths = {op.module_path.split(".")[1] for op in g.ops if op.module_path.count(".") >= 1}
        assert {"encoder", "decoder"} <= paths
