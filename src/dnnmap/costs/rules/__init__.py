"""Cost rule modules; importing this package registers every rule.

One module per op family; the family decides the op's :class:`~dnnmap.ir.OpClass`
(``dnnmap.ir.classify`` is the table, and a test keeps the two in agreement).
"""

from dnnmap.costs.rules import (  # noqa: F401  (imported to register their rules)
    attention,
    conv,
    data_movement,
    elementwise,
    embedding,
    matmul,
    normalization,
    reduction,
    softmax,
    view,
)
