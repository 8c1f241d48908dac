"""What a sweep covers: models x devices x batch x precision x sequence length x mode.

A :class:`SweepSpec` comes from command-line options or a YAML file (:func:`load_sweep_file`);
either way it is validated with pydantic, and every model and device is resolved before any
work starts. Errors in a file name the line::

    models: [resnet18, hf:gpt2]      # torchvision, timm:, hf:, file.py:factory
    devices: [h100-sxm5, l4]         # or: all
    batch: [1, 8, 32]
    precision: [bf16, int8]
    seq_len: [128, 512]              # language models only; vision models keep their image size
    mode: [eager, compiled]

:func:`expand` turns a spec into :class:`Group` s: one capture + partition (same model, shape
and fusion strategy) and every (mode, precision, device) case mapped from it.

>>> spec = SweepSpec(models=["resnet18"], devices=["l4", "h100-sxm5"], batch=[1, 8], precision="bf16")
>>> spec.batch, spec.precision, spec.mode
([1, 8], ['bf16'], ['compiled'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dnnmap.errors import DnnmapError
from dnnmap.hardware.schema import HardwareProfile, Precision
from dnnmap.ir import ExecutionMode, Tf32Mode

MAX_SWEEP_FILE_BYTES = 1_000_000


def _listify(v: Any) -> Any:
    return v if isinstance(v, list) else [v]


class SweepSpec(BaseModel):
    """The axes of a sweep (lists; a scalar is a list of one) and the options every case shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(min_length=1)
    devices: list[str] = Field(min_length=1)  # profile names / YAML paths, or ["all"]
    batch: list[int] = Field(default=[1], min_length=1)
    precision: list[str] = Field(default=["fp32"], min_length=1)
    seq_len: list[int | None] = Field(default=[None], min_length=1)
    mode: list[str] = Field(default=["compiled"], min_length=1)
    input_shape: str | None = None  # without batch, e.g. "3,224,224" (models whose inputs need it)
    attn_implementation: str | None = None
    tf32: str = "default"
    dtype: str = "fp32"
    hardware_dirs: list[str] = Field(default_factory=list)

    @field_validator("models", "devices", "batch", "precision", "seq_len", "mode", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _listify(v)

    @field_validator("batch")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError("every batch must be >= 1")
        return v

    @field_validator("seq_len")
    @classmethod
    def _positive_seq(cls, v: list[int | None]) -> list[int | None]:
        if any(s is not None and s < 1 for s in v):
            raise ValueError("every seq_len must be >= 1")
        return v

    @field_validator("precision")
    @classmethod
    def _precisions(cls, v: list[str]) -> list[str]:
        return [Precision.parse(p).value for p in v]

    @field_validator("mode")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        return [ExecutionMode.parse(m).value for m in v]

    @field_validator("tf32")
    @classmethod
    def _tf32(cls, v: str) -> str:
        return Tf32Mode.parse(v).value


@dataclass(frozen=True)
class Case:
    """One row of the sweep table: a scenario on one device."""

    model: str
    device: str
    batch: int
    seq_len: int | None
    precision: str
    mode: str
    attn_implementation: str | None
    tf32: str
    dtype: str
    input_shape: str | None = None


@dataclass(frozen=True)
class Group:
    """Cases sharing one capture and partition; ``profiles`` maps device name -> profile."""

    model: str
    batch: int
    seq_len: int | None
    strategy: str
    attn_implementation: str | None
    dtype: str
    input_shape: str | None
    cases: tuple[Case, ...]
    profiles: tuple[tuple[str, HardwareProfile], ...]


# -- YAML with line numbers ------------------------------------------------------------------------
class SweepFileError(DnnmapError):
    """A sweep file that cannot be used; the message names the file and line."""


def load_sweep_file(path: str | Path) -> tuple[SweepSpec, dict[tuple[Any, ...], int]]:
    """The spec in ``path`` and the line of each entry (``("models", 0) -> 2``)."""
    p = Path(path)
    if not p.is_file():
        raise SweepFileError(f"{p}: no such sweep file")
    if p.stat().st_size > MAX_SWEEP_FILE_BYTES:
        raise SweepFileError(f"{p}: {p.stat().st_size} bytes; a sweep file is at most {MAX_SWEEP_FILE_BYTES}")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise SweepFileError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise SweepFileError(f"{p}: a sweep file is a mapping (models:, devices:, batch: ...)")
    lines = _lines(node)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        line = _nearest_line(lines, loc)
        field = ".".join(str(x) for x in loc) or "(top level)"
        raise SweepFileError(f"{p}:{line}: {field}: {err['msg']}") from None
    except DnnmapError as e:  # an unknown precision / mode, raised inside a validator
        raise SweepFileError(f"{p}: {e}") from None
    base = p.resolve().parent  # relative paths in the file mean the file's folder, not the working directory
    spec = spec.model_copy(update={
        "models": [_model_relative_to(m, base) for m in spec.models],
        "devices": [str(base / d) if d.endswith((".yaml", ".yml")) and not Path(d).is_absolute() else d
                    for d in spec.devices],
        "hardware_dirs": [str(base / d) for d in spec.hardware_dirs]})  # base / absolute == absolute
    return spec, lines


def _model_relative_to(spec: str, base: Path) -> str:
    """``dir/m.py:build`` or ``hf:dir/config.json`` with a relative path made absolute under
    ``base``; a name (``resnet18``, ``timm:...``, ``hf:gpt2``) is kept as written.

    >>> _model_relative_to("models/m.py:build", Path("/s")), _model_relative_to("hf:c.json", Path("/s"))
    ('/s/models/m.py:build', 'hf:/s/c.json')
    >>> _model_relative_to("resnet18", Path("/s")), _model_relative_to("/abs/m.py:f", Path("/s"))
    ('resnet18', '/abs/m.py:f')
    """
    prefix, rest = ("hf:", spec[3:]) if spec.startswith("hf:") else ("", spec)
    path_part, at, cls = rest.partition("@")
    file_part, colon, factory = (path_part, "", "") if prefix else path_part.partition(":")
    if file_part.endswith((".json", ".py")) and not Path(file_part).is_absolute():
        file_part = str(base / file_part)
    return prefix + file_part + colon + factory + at + cls


def _lines(node: Any) -> dict[tuple[Any, ...], int]:
    """1-based line of every key and list item under the top-level mapping."""
    out: dict[tuple[Any, ...], int] = {}
    if not isinstance(node, yaml.MappingNode):
        return out
    for k, v in node.value:
        key = k.value
        out[(key,)] = k.start_mark.line + 1
        if isinstance(v, yaml.SequenceNode):
            for i, item in enumerate(v.value):
                out[(key, i)] = item.start_mark.line + 1
        else:
            out[(key, 0)] = v.start_mark.line + 1
    return out


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


# -- resolving names and expanding -----------------------------------------------------------------
def resolve(spec: SweepSpec, lines: dict[tuple[Any, ...], int] | None = None,
            where: str = "") -> tuple[dict[str, str], dict[str, HardwareProfile]]:
    """Every model's family (``text`` / ``vision`` / ...) and every device's profile, or a
    :class:`SweepFileError` naming the entry (and its line, for a file)."""
    from dnnmap.capture.sources import resolve as resolve_model
    from dnnmap.hardware import list_profiles, load_profile

    def fail(key: tuple[Any, ...], e: Exception) -> SweepFileError:
        line = f":{lines[key]}" if lines and key in lines else ""
        prefix = f"{where}{line}: " if where else ""
        return SweepFileError(f"{prefix}{key[0]}[{key[1]}]: {e}")

    families: dict[str, str] = {}
    for i, m in enumerate(spec.models):
        try:
            families[m] = resolve_model(m).family.value
        except DnnmapError as e:
            raise fail(("models", i), e) from None
    profiles: dict[str, HardwareProfile] = {}
    for i, d in enumerate(spec.devices):
        try:
            found = list_profiles(spec.hardware_dirs) if d == "all" else [load_profile(d, spec.hardware_dirs)]
        except DnnmapError as e:
            raise fail(("devices", i), e) from None
        for prof in found:
            profiles.setdefault(prof.name, prof)
    return families, profiles


def expand(spec: SweepSpec, families: dict[str, str], profiles: dict[str, HardwareProfile]) -> list[Group]:
    """The groups of the sweep, in table order (model, seq_len, batch, strategy); within a
    group the cases run mode, precision, device in the order given."""
    groups: list[Group] = []
    for model in spec.models:
        seqs = spec.seq_len if families.get(model) == "text" else [None]
        for seq in dict.fromkeys(seqs):
            for batch in spec.batch:
                by_strategy: dict[str, list[Case]] = {}
                for mode in spec.mode:
                    strategy = ExecutionMode.parse(mode).strategy
                    for prec in spec.precision:
                        for dev in profiles:
                            by_strategy.setdefault(strategy, []).append(Case(
                                model, dev, batch, seq, prec, mode, spec.attn_implementation, spec.tf32, spec.dtype,
                                spec.input_shape))
                for strategy, cases in by_strategy.items():
                    groups.append(Group(model, batch, seq, strategy, spec.attn_implementation, spec.dtype,
                                        spec.input_shape, tuple(cases), tuple(profiles.items())))
    return groups
