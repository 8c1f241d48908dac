"""Run models for real and compare with dnnmap's predictions (held out from calibration).

>>> from dnnmap.validate import validate                              # doctest: +SKIP
>>> r = validate(["resnet18"], "amd-epyc-measured.yaml", batches=(1, 8))  # doctest: +SKIP
>>> r.summary.median_abs_error, r.to_dataframe().shape                # doctest: +SKIP
"""

from dnnmap.validate.measure import Measurement, measure_module
from dnnmap.validate.record import (
    EAGER_NOTE,
    HELD_OUT_NOTE,
    Breakdown,
    Summary,
    ValidationCase,
    ValidationReport,
    summarise,
)
from dnnmap.validate.run import RunSettings, Shapes, module_prefixes, predict, repredict, validate

__all__ = [
    "EAGER_NOTE",
    "HELD_OUT_NOTE",
    "Breakdown",
    "Measurement",
    "RunSettings",
    "Shapes",
    "Summary",
    "ValidationCase",
    "ValidationReport",
    "measure_module",
    "module_prefixes",
    "predict",
    "repredict",
    "summarise",
    "validate",
]
