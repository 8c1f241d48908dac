"""One registry of cost rules, one way to register; a duplicate fails at import.

>>> from dnnmap.costs.registry import rule_for
>>> rule_for("aten.mm.default") is not None
True
"""

from __future__ import annotations

from collections.abc import Callable

from dnnmap.costs.base import OpCost, RuleContext
from dnnmap.ir.classify import inplace_base, op_name

Rule = Callable[[RuleContext], OpCost]

_RULES: dict[str, Rule] = {}


def cost_rule(*names: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the cost rule for ATen ops ``names`` (``"mm"``, ``"aten.addmm"``).

    Names are matched without namespace and overload (``aten.add.Tensor`` -> ``add``), so
    one rule covers every overload; an in-place variant (``add_``) without a rule of its own
    uses the rule of its out-of-place op. Registering a name twice raises at import time.
    """

    def deco(fn: Rule) -> Rule:
        for n in names:
            key = op_name(n)
            if key in _RULES:
                raise RuntimeError(
                    f"cost rule for {key!r} registered twice: {_RULES[key].__qualname__} and {fn.__qualname__}"
                )
            _RULES[key] = fn
        return fn

    return deco


def rule_for(target: str) -> Rule | None:
    _ensure_loaded()
    key = op_name(target)
    rule = _RULES.get(key)
    if rule is None and (base := inplace_base(key)) is not None:
        rule = _RULES.get(base)
    return rule


def registered_ops() -> frozenset[str]:
    _ensure_loaded()
    return frozenset(_RULES)


_loaded = False


def _ensure_loaded() -> None:
    """Import the rule modules once (they register themselves)."""
    global _loaded
    if not _loaded:
        _loaded = True
        from dnnmap.costs import rules  # noqa: F401
