"""Sweeps: many scenarios x devices, run in a local process pool or on Ray, cached by content
hash, gathered into one tidy table (see :mod:`dnnmap.sweep.table`)."""

from dnnmap.sweep.cache import DEFAULT_CACHE_DIR, SweepCache, case_key
from dnnmap.sweep.executors import LOCAL_RAY, RayUnavailableError
from dnnmap.sweep.run import SweepResult, plan, run_sweep
from dnnmap.sweep.spec import (
           Case,
           Group,
           SweepFileError,
           SweepSpec,
           expand,
           load_sweep_file,
           resolve,
)
from dnnmap.sweep.table import frame, to_csv, to_parquet

__all__ = ["DEFAULT_CACHE_DIR", "LOCAL_RAY", "Case", "Group", "RayUnavailableError", "SweepCache", "SweepFileError",
           "SweepResult", "SweepSpec", "case_key", "expand", "frame", "load_sweep_file", "plan", "resolve",
           "run_sweep", "to_csv", "to_parquet"]
