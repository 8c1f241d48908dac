"""What a prediction costs (with the device-hour price, hardware data): a device-hour price turned into $ per 1,000 inferences and $ per
million tokens. The price is the user's (``--price-per-hour``) or the profile's
(``price_per_hour_usd``, sourced and dated); without either there is no cost, never a guess.

>>> c = cost(latency_s=0.002, batch=8, price_per_hour_usd=3.6, seq_len=128)
>>> round(c["usd_per_1000_inferences"], 9), round(c["usd_per_million_tokens"], 9)
(0.00025, 0.001953125)
"""

from __future__ import annotations

from typing import Any

from dnnmap.hardware.schema import HardwareProfile


def price_of(profile: HardwareProfile | None, given: float | None) -> tuple[float | None, str | None]:
    """(USD per device-hour, where it comes from): the user's figure first, then the profile's."""
    if given is not None:
        return given, "--price-per-hour"
    if profile is not None and profile.price_per_hour_usd is not None:
        return profile.price_per_hour_usd, profile.sources.get("price_per_hour_usd")
    return None, None


def cost(latency_s: float, batch: int, price_per_hour_usd: float | None, seq_len: int | None = None,
         source: str | None = None) -> dict[str, Any]:
    """The cost record (every key present; ``None`` where there is no price or no tokens).

    One inference of the batch holds the device for ``latency_s``:
    $ per sample = price / 3600 x latency / batch; a token is one of the ``batch x seq_len``
    positions the forward pass processes."""
    per_s = None if price_per_hour_usd is None else price_per_hour_usd / 3600.0
    per_sample = None if per_s is None else per_s * latency_s / batch
    per_token = None if per_sample is None or not seq_len else per_sample / seq_len
    return {"price_per_hour_usd": price_per_hour_usd, "price_source": source,
            "usd_per_1000_inferences": None if per_sample is None else per_sample * 1e3,
            "usd_per_million_tokens": None if per_token is None else per_token * 1e6}


def cost_line(c: dict[str, Any]) -> str | None:
    """One line for the terminal, or None without a price."""
    if c["price_per_hour_usd"] is None:
        return None
    tokens = f", ${c['usd_per_million_tokens']:.4g} per million tokens" if c["usd_per_million_tokens"] else ""
    return (f"cost: ${c['usd_per_1000_inferences']:.4g} per 1,000 inferences{tokens} "
            f"at ${c['price_per_hour_usd']:g}/device-hour ({c['price_source']})")
