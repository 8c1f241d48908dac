"""Find and load hardware profiles: one YAML file per device, one file per name.

Search order: the ``extra_dirs`` given (``--hardware-dir``), then the directories in the
``DNNMAP_HARDWARE_DIR`` environment variable (``os.pathsep``-separated), then the profiles
shipped with dnnmap. Two files defining the same ``name`` anywhere on that path is an error
naming both: one source of truth per device.

>>> load_profile("h100-sxm5").peak_tflops[Precision.BF16]  # dense, not the 1979 with sparsity
989.4
>>> "kpu-t2" in profile_names()
True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dnnmap.errors import HardwareProfileError, UnknownNameError
from dnnmap.hardware.schema import HardwareProfile, Precision

ENV_VAR = "DNNMAP_HARDWARE_DIR"
SHIPPED_DIR = Path(__file__).parent / "profiles"
_SUFFIXES = (".yaml", ".yml")

__all__ = ["ENV_VAR", "SHIPPED_DIR", "Precision", "list_profiles", "load_file", "load_profile",
           "profile_names", "search_dirs"]


def search_dirs(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """The directories searched, in order; a given directory that does not exist is an error."""
    dirs = [Path(d) for d in extra_dirs]
    dirs += [Path(d) for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d.strip()]
    for d in dirs:
        if not d.is_dir():
            raise HardwareProfileError(f"hardware directory {str(d)!r} does not exist or is not a directory")
    dirs.append(SHIPPED_DIR)
    out: list[Path] = []
    for d in dirs:  # the same directory twice (flag and env var) is not a duplicate definition
        if d.resolve() not in {o.resolve() for o in out}:
            out.append(d)
    return out


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that rejects a key given twice in one mapping (YAML would keep the last)."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@lru_cache(maxsize=256)
def _read_yaml_cached(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    return _read_yaml(path)


# A profile is a few kB (the largest calibrated one ~280 kB); a 104 MB file took 45 s and
# 3.3 GB of memory to parse before being rejected. Refuse anything bigger before parsing.
MAX_YAML_BYTES = 1_000_000


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            raise HardwareProfileError(f"{path}: larger than {MAX_YAML_BYTES:,} bytes; a hardware profile "
                                       "is a few kB, so this is not one (not parsed)")
        data = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise HardwareProfileError(f"{path}: not UTF-8 text: {e}") from None
    except OSError as e:
        raise HardwareProfileError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise HardwareProfileError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise HardwareProfileError(f"{path}: a hardware profile must be a YAML mapping")
    return data


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "(profile)"


def _explain(path: Path, err: ValidationError) -> HardwareProfileError:
    """One line per problem: ``h100.yaml: peak_tflops.bf16: Input should be greater than 0``."""
    lines = []
    for e in err.errors(include_url=False):
        msg = str(e["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}: {_field(e['loc'])}: {msg}")
    return HardwareProfileError("\n".join(lines))


@lru_cache(maxsize=256)
def _load_cached(path: Path, mtime_ns: int, size: int) -> HardwareProfile:
    data = _read_yaml_cached(path, mtime_ns, size)
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as e:
        raise _explain(path, e) from None


def load_file(path: str | os.PathLike[str]) -> HardwareProfile:
    """Load and validate one YAML file (cached while the file is unchanged)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise HardwareProfileError(f"{p}: no such hardware profile file") from None
    return _load_cached(p.resolve(), st.st_mtime_ns, st.st_size)


def _name_in(path: Path, mtime_ns: int, size: int) -> str:
    name = _read_yaml_cached(path, mtime_ns, size).get("name")
    if not isinstance(name, str) or not name:
        raise HardwareProfileError(f"{path}: name: missing (every profile needs a string `name`)")
    return name


def _index(extra_dirs: Iterable[str | os.PathLike[str]]) -> dict[str, Path]:
    """name -> file over the search path; a name defined twice is an error naming both files."""
    found: dict[str, Path] = {}
    for d in search_dirs(extra_dirs):
        for f in sorted(d.iterdir()):
            if f.suffix not in _SUFFIXES or not f.is_file():
                continue
            st = f.stat()
            name = _name_in(f.resolve(), st.st_mtime_ns, st.st_size)
            if name in found:
                raise HardwareProfileError(
                    f"hardware profile {name!r} is defined twice: {found[name]} and {f} "
                    "(one source of truth per device: rename or remove one)"
                )
            found[name] = f
    return found


def profile_names(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """Every profile name on the search path, sorted."""
    return sorted(_index(extra_dirs))


def _looks_like_path(name_or_path: str | os.PathLike[str]) -> bool:
    s = os.fspath(name_or_path)
    return s.endswith(_SUFFIXES) or os.sep in s or (os.altsep is not None and os.altsep in s)


def load_profile(
    name_or_path: str | os.PathLike[str], extra_dirs: Iterable[str | os.PathLike[str]] = ()
) -> HardwareProfile:
    """A profile by name ("h100-sxm5") or by path to a YAML file.

    Unknown names raise :class:`UnknownNameError` with close suggestions; invalid files raise
    :class:`HardwareProfileError` naming the file and the field.
    """
    if _looks_like_path(name_or_path):
        return load_file(name_or_path)
    name = str(name_or_path)
    index = _index(extra_dirs)
    if name not in index:
        raise UnknownNameError("hardware", name, index)
    return load_file(index[name])


def list_profiles(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[HardwareProfile]:
    """Every profile on the search path, validated, ordered by device class then name."""
    profiles = [load_file(path) for path in _index(extra_dirs).values()]
    order = {"cpu": 0, "gpu": 1, "tpu": 2, "kpu": 3}
    return sorted(profiles, key=lambda p: (order[p.device_class.value], p.name))
