"""Compare predictions with end-to-end latencies someone else measured (held out).

``dnnmap validate --measurements PATH`` reads published end-to-end measurements — a generic CSV
(``docs/measurement-formats.md``) or NeuSight's label layout — predicts each case with the same
pipeline every command uses (:func:`dnnmap.pipeline.prepare` once per model side, then
:func:`dnnmap.pipeline.estimate_on` per device) and summarises the errors with
:func:`dnnmap.validate.record.summarise`: median |error|, MAPE, within ±10 / ±20 %, Spearman,
signed median.

NeuSight layout: ``<root>/e2e/<GPU>/<model>-inf-<seq>-<batch>[-fusion].json`` (``e2e_latency``
in ms) with models from ``<root>/configs/<model>.json``; eager PyTorch, fp32, TF32 off, eager
attention; ``-fusion`` = ``torch.compile`` (mode ``compiled``, the eager attention code compiled).
BERT ran as ``AutoModelForSequenceClassification``, GPT-2 / GPT-3 / OPT as ``AutoModelForCausalLM``.
Training labels (``-train-``) and Switch (an encoder-decoder that needs decoder inputs the label
does not describe) are skipped, and the report says so.

>>> neusight_case("bert_large-inf-512-16-fusion.json")
('bert_large', 512, 16, 'compiled')
>>> neusight_case("gpt2_large-train-1024-4.json") is None
True
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dnnmap.calibrate.imports import CsvRows
from dnnmap.errors import DnnmapError
from dnnmap.validate.record import Summary, summarise

# NeuSight's GPU folders -> dnnmap profile names
NEUSIGHT_GPUS = {
    "NVIDIA_A100-PCIE-40GB": "a100-pcie-40gb",
    "Tesla_V100-PCIE-32GB": "v100-pcie-32gb",
    "Tesla_T4": "t4",
    "Tesla_P100-PCIE-16GB": "p100-pcie-16gb",
    "Tesla_P4": "p4",
}
NEUSIGHT_SOURCE = "NeuSight (ASPLOS 2025) end-to-end labels, scripts/asplos/e2e, PyTorch 2.1, MIT licence"
# Hugging Face classes NeuSight ran (configs naming *LMHeadModel / *ForCausalLM default to causal LM)
_NEUSIGHT_CLASS = {"bert": "BertForSequenceClassification"}
_NEUSIGHT_SKIP = {"switchxl4": "Switch is an encoder-decoder: the label does not say the decoder inputs"}
_NAME = re.compile(r"^(?P<model>.+?)-(?P<phase>inf|train)-(?P<seq>\d+)-(?P<batch>\d+)(?P<fusion>-fusion)?\.json$")
REQUIRED = ("model", "batch", "seq_len", "mode", "precision", "device", "measured_ms", "source")
# a whole model's inference below 5 µs is shorter than launching one GPU kernel: seconds, surely
MIN_PLAUSIBLE_MS = 0.005
# a prediction 300x off is a units mix-up (ms vs s or µs is 1000x), not a modelling error
MAX_PLAUSIBLE_RATIO = 300.0
HELD_OUT = ("Held out: the measurements were taken by others; no figure of the profiles was fitted to "
            "these cases (imported kernel tables are microbenchmarks only).")


@dataclass(frozen=True)
class E2ERow:
    """One end-to-end measurement to predict."""

    label: str  # "gpt2_large seq 1024 batch 4 (compiled)"
    model: str  # a dnnmap model spec
    batch: int
    seq_len: int | None
    mode: str
    precision: str
    device: str  # profile name (or path)
    measured_s: float
    source: str
    where: str  # "file row 3"
    attn_implementation: str | None = None
    tf32: str = "default"
    input_shape: str | None = None  # models without a fixed input: "3x224x224" (without batch)


@dataclass(frozen=True)
class PublishedCase:
    label: str
    model: str
    batch: int
    seq_len: int | None
    mode: str
    device: str  # the row's device
    profile: str  # the profile that predicted it
    provenance: str
    measured_s: float
    predicted_s: float
    bound: str
    source: str
    unknown_ops: tuple[str, ...] = ()
    estimated_share: float = math.nan

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


@dataclass(frozen=True)
class PublishedReport:
    """Predicted vs published measurements, with the validation statistics."""

    measurements: str
    cases: tuple[PublishedCase, ...]
    skipped: tuple[str, ...] = ()
    notes: tuple[str, ...] = (HELD_OUT,)

    @property
    def summary(self) -> Summary:
        return summarise((c.measured_s, c.predicted_s) for c in self.cases)

    def by_profile(self) -> dict[str, Summary]:
        names = dict.fromkeys(c.profile for c in self.cases)
        return {n: summarise((c.measured_s, c.predicted_s) for c in self.cases if c.profile == n) for n in names}

    def to_dict(self) -> dict[str, Any]:
        from dnnmap.outputs import json_safe

        cases = []
        for c in self.cases:
            d = asdict(c)
            d["error"] = c.error
            cases.append(d)
        raw = {"measurements": self.measurements, "summary": asdict(self.summary),
               "by_profile": {k: asdict(v) for k, v in self.by_profile().items()},
               "skipped": list(self.skipped), "notes": list(self.notes), "cases": cases}
        return json_safe(raw, {"spearman": "rank correlation needs at least three cases",
                               "estimated_share": "not reported"})


# --- readers ---------------------------------------------------------------------------------


def _model_spec(spec: str, base: Path) -> str:
    """A model spec with a relative file path resolved against the CSV's folder."""
    prefix, rest = ("hf:", spec[3:]) if spec.startswith("hf:") else ("", spec)
    path_part, at, cls = rest.partition("@")
    file_part, colon, factory = path_part.partition(":") if not prefix else (path_part, "", "")
    if file_part.endswith((".json", ".py")) and not Path(file_part).is_absolute():
        file_part = str((base / file_part).resolve())
    return prefix + file_part + colon + factory + at + cls


def read_csv(path: Path) -> list[E2ERow]:
    """Rows of a generic end-to-end measurement CSV (see docs/measurement-formats.md)."""
    t = CsvRows(path, REQUIRED, latency_column="measured_ms")
    rows = []
    for line, r in t.rows:
        ms = t.number(line, r, "measured_ms")
        if ms < MIN_PLAUSIBLE_MS:
            raise DnnmapError(f"{t.where(line, 'measured_ms')}: {ms:g} ms is shorter than launching one GPU kernel; "
                              "is the column in seconds? (measured_ms must be milliseconds)")
        seq = r.get("seq_len", "")
        mode = t.text(line, r, "mode").lower()
        if mode not in ("eager", "compiled", "cudagraph"):
            raise DnnmapError(f"{t.where(line, 'mode')}: {mode!r} is not one of eager, compiled, cudagraph")
        model = t.text(line, r, "model")
        attn = r.get("attn_implementation") or None
        rows.append(E2ERow(
            label=r.get("label") or f"{Path(model.split('@')[0]).stem}{f' seq {seq}' if seq else ''} batch {r['batch']} ({mode})",
            model=_model_spec(model, path.parent), batch=t.integer(line, r, "batch"),
            seq_len=t.integer(line, r, "seq_len") if seq not in ("", "-") else None, mode=mode,
            precision=t.text(line, r, "precision"), device=t.text(line, r, "device"), measured_s=ms * 1e-3,
            source=t.text(line, r, "source"), where=t.where(line), attn_implementation=attn,
            tf32=r.get("tf32") or "default", input_shape=r.get("input_shape") or None))
    return rows


def neusight_case(filename: str) -> tuple[str, int, int, str] | None:
    """(model, seq, batch, mode) of an inference label file name; None for training labels."""
    m = _NAME.match(filename)
    if m is None or m["phase"] != "inf":
        return None
    return m["model"], int(m["seq"]), int(m["batch"]), "compiled" if m["fusion"] else "eager"


def read_neusight(root: Path) -> tuple[list[E2ERow], list[str]]:
    """Inference labels under a NeuSight root (``e2e/`` and ``configs/`` inside), or one GPU
    folder ``<root>/e2e/<GPU>``; returns the rows and what was skipped (and why)."""
    if (root / "e2e").is_dir():
        gpu_dirs, configs = sorted(d for d in (root / "e2e").iterdir() if d.is_dir()), root / "configs"
    else:
        gpu_dirs, configs = [root], root.parent.parent / "configs"
    rows: list[E2ERow] = []
    skipped: list[str] = []
    for d in gpu_dirs:
        files = sorted(d.glob("*.json"))
        device = NEUSIGHT_GPUS.get(d.name)
        if device is None:
            if files:
                skipped.append(f"{d.name}: no dnnmap profile mapped (multi-GPU training labels)")
            continue
        for f in files:
            case = neusight_case(f.name)
            if case is None:
                skipped.append(f"{d.name}/{f.name}: training or multi-GPU label")
                continue
            model, seq, batch, mode = case
            if model in _NEUSIGHT_SKIP:
                skipped.append(f"{d.name}/{f.name}: {_NEUSIGHT_SKIP[model]}")
                continue
            rows.append(_neusight_row(f, configs, model, seq, batch, mode, device))
    if not rows and not skipped:
        raise DnnmapError(f"{root}: no NeuSight labels found (expected e2e/<GPU>/<model>-inf-<seq>-<batch>.json)")
    return rows, skipped


def _neusight_row(f: Path, configs: Path, model: str, seq: int, batch: int, mode: str, device: str) -> E2ERow:
    try:
        ms = float(json.loads(f.read_text())["e2e_latency"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DnnmapError(f"{f}: field 'e2e_latency': cannot read it ({e})") from None
    if not ms > 0:
        raise DnnmapError(f"{f}: field 'e2e_latency': must be > 0, got {ms}")
    config = configs / f"{model}.json"
    if not config.is_file():
        raise DnnmapError(f"{f}: unknown model {model!r}: no config {config}")
    family = model.split("_")[0]
    spec = f"hf:{config}" + (f"@{_NEUSIGHT_CLASS[family]}" if family in _NEUSIGHT_CLASS else "")
    return E2ERow(label=f"{model} seq {seq} batch {batch} ({mode})", model=spec, batch=batch, seq_len=seq,
                  mode=mode, precision="fp32", device=device, measured_s=ms * 1e-3, source=NEUSIGHT_SOURCE,
                  where=str(f), attn_implementation="eager", tf32="off")


def read_measurements(path: str | Path) -> tuple[list[E2ERow], list[str]]:
    """A generic CSV file, or a NeuSight folder."""
    p = Path(path)
    if p.is_dir():
        return read_neusight(p)
    if p.is_file():
        return read_csv(p), []
    raise DnnmapError(f"{p}: no such file or folder")


# --- predicting --------------------------------------------------------------------------------


def _check_model(r: E2ERow) -> None:
    """Model files must exist before anything is captured (a typo fails fast, naming the row)."""
    spec = r.model[3:] if r.model.startswith("hf:") else r.model
    file_part = spec.split("@")[0] if r.model.startswith("hf:") else spec.split(":")[0]
    if file_part.endswith((".json", ".py")) and not Path(file_part).is_file():
        raise DnnmapError(f"{r.where}, column 'model': unknown model {r.model!r}: no such file {file_part}")


def _profiles(rows: Sequence[E2ERow], hardware: str | None, dirs: Sequence[str]) -> dict[str, Any]:
    """Every profile the rows need, loaded up front (an unknown device fails before any capture)."""
    from dnnmap.hardware.loader import load_profile

    out: dict[str, Any] = {}
    if hardware is not None:
        out[""] = load_profile(hardware, dirs)
        return out
    for r in rows:
        if r.device not in out:
            try:
                out[r.device] = load_profile(r.device, dirs)
            except DnnmapError as e:
                raise DnnmapError(f"{r.where}, column 'device': {e}") from None
    return out


def _scenario(r: E2ERow):  # noqa: ANN202 - pipeline.Scenario
    from dnnmap.pipeline import Scenario

    try:
        return Scenario(r.model, batch=r.batch, seq_len=r.seq_len, input_shape=r.input_shape, precision=r.precision,
                        mode=r.mode, attn_implementation=r.attn_implementation, tf32=r.tf32)
    except DnnmapError as e:
        raise DnnmapError(f"{r.where}: {e}") from None


def _main_bound(est: Any) -> str:
    shares: dict[str, float] = {}
    for sg in est.subgraphs:
        shares[sg.bound.value] = shares.get(sg.bound.value, 0.0) + sg.latency_s
    return max(shares, key=shares.__getitem__) if shares else "-"


def validate_published(path: str | Path, hardware: str | None = None, hardware_dirs: Sequence[str] = (),
                       progress: Callable[[str, int, int], None] | None = None,
                       rows: Iterable[E2ERow] | None = None) -> PublishedReport:
    """Predict every measurement in ``path`` (on ``hardware`` when given, else each row's device).

    Every row is checked (columns, values, models, devices) before the first capture; each model
    side (model, batch, seq, mode, attention) is captured once and mapped onto every device."""
    from dnnmap.pipeline import estimate_on, prepare

    skipped: list[str] = []
    if rows is None:
        rows, skipped = read_measurements(path)
    rows = list(rows)
    if not rows:
        raise DnnmapError(f"{path}: no measurements to validate" + (f" (skipped: {'; '.join(skipped)})" if skipped else ""))
    for r in rows:
        _check_model(r)
    profiles = _profiles(rows, hardware, hardware_dirs)
    scenarios = [_scenario(r) for r in rows]
    prepared: dict[Any, Any] = {}
    cases = []
    for i, (r, s) in enumerate(zip(rows, scenarios, strict=True)):
        if progress is not None:
            progress(r.label, i, len(rows))
        key = (s.model_key(), s.mode)
        if key not in prepared:
            try:
                prepared[key] = prepare(s)
            except DnnmapError as e:
                raise DnnmapError(f"{r.where}, column 'model': {e}") from None
        prof = profiles["" if hardware is not None else r.device]
        est = estimate_on(prepared[key], prof)
        ratio = est.latency_s / r.measured_s
        if not 1 / MAX_PLAUSIBLE_RATIO < ratio < MAX_PLAUSIBLE_RATIO:
            raise DnnmapError(f"{r.where}, column 'measured_ms': measured {r.measured_s * 1e3:.4g} ms but predicted "
                              f"{est.latency_s * 1e3:.4g} ms ({ratio:.3g}x): a units mix-up (seconds or microseconds "
                              "in a milliseconds column)?")
        cases.append(PublishedCase(
            label=r.label, model=r.model, batch=r.batch, seq_len=r.seq_len, mode=r.mode, device=r.device,
            profile=prof.name, provenance=est.provenance.value, measured_s=r.measured_s, predicted_s=est.latency_s,
            bound=_main_bound(est), source=r.source, unknown_ops=tuple(est.unknown_ops),
            estimated_share=float(getattr(est, "estimated_share", math.nan))))
    if progress is not None:
        progress("done", len(rows), len(rows))
    notes = [HELD_OUT]
    for prof in {p.name: p for p in profiles.values()}.values():
        if prof.calibration is not None:
            notes.append(f"{prof.name}: {prof.calibration.describe()}")
    return PublishedReport(str(path), tuple(cases), tuple(skipped), tuple(notes))


__all__ = ["E2ERow", "PublishedCase", "PublishedReport", "neusight_case", "read_csv", "read_measurements",
           "read_neusight", "validate_published"]
