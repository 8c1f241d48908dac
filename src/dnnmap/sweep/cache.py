"""Results cached by a content hash of everything a case's numbers depend on.

The key of a case hashes: the case itself (model, device, batch, seq_len, precision, mode and
shared options), the device's whole profile (so an edited YAML misses), the model's source
(the file's bytes for ``file.py:factory`` / ``hf:config.json``, else its name) and dnnmap's own
code (every ``.py`` / ``.yaml`` of the package: a changed rule or mapper misses too). One JSON
file per case under ``DIR/ab/abcdef....json``, written through :mod:`dnnmap.outputs`
(complete or absent, never half-written), so an interrupted sweep keeps what it finished.

>>> import tempfile
>>> c = SweepCache(tempfile.mkdtemp())
>>> c.get("0" * 64) is None
True
>>> c.put("0" * 64, {"latency_s": 1.5}); c.get("0" * 64)
{'latency_s': 1.5}
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dnnmap.hardware.schema import HardwareProfile
from dnnmap.outputs import OutputFileError, to_json, write_files
from dnnmap.sweep.spec import Case

DEFAULT_CACHE_DIR = ".dnnmap-cache"


@functools.cache
def code_fingerprint() -> str:
    """sha256 of dnnmap's source files (paths and bytes), the code every number comes from."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.suffix in (".py", ".yaml", ".json") and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def model_fingerprint(model: str) -> str:
    """The model's source: a user file's or config's bytes, else the name (torchvision, timm
    and bundled HF configs are fixed by the installed packages and dnnmap's code)."""
    path = model.rpartition(":")[0] if ".py:" in model else model.removeprefix("hf:")
    p = Path(path)
    if (".py:" in model or model.endswith(".json")) and p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()
    return model


@functools.lru_cache(maxsize=512)
def _profile_hash(profile_json: str) -> str:
    return hashlib.sha256(profile_json.encode()).hexdigest()


def case_key(case: Case, profile: HardwareProfile) -> str:
    """The content hash naming ``case``'s cached result."""
    doc = {"case": asdict(case), "profile": _profile_hash(profile.model_dump_json()),
           "model_source": model_fingerprint(case.model), "code": code_fingerprint()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class SweepCache:
    """A directory of finished cases (one JSON file each); ``None`` dir = no cache."""

    def __init__(self, directory: str | Path | None) -> None:
        self.dir = Path(directory) if directory is not None else None
        if self.dir is not None and self.dir.exists() and not self.dir.is_dir():
            raise OutputFileError(f"cache {self.dir} is a file, not a directory")

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.dir is None:
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None  # missing, or unreadable: computed again

    def put(self, key: str, row: dict[str, Any]) -> None:
        if self.dir is not None:
            write_files({self._path(key): to_json(row, indent=None)}, force=True)
