"""Capture a PyTorch model as an ``ir.Graph`` of ATen ops, on fake tensors by default.

Two paths, one result: ``torch.export`` (main) and an eager dispatch recorder (fallback for
models export cannot take). Model names come from one registry (:mod:`.sources`).

>>> from dnnmap.capture import capture
>>> g = capture("resnet18")
>>> g.ops[0].target, g.ops[0].module_path, g.ops[0].module_type
('aten.conv2d.default', 'conv1', 'Conv2d')
"""

from dnnmap.capture.api import PATHS, capture
from dnnmap.capture.sources import build_model, list_models

__all__ = ["PATHS", "build_model", "capture", "list_models"]
