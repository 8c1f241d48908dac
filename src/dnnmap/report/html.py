"""``dnnmap report``: one self-contained HTML file — summary, sortable per-kernel table, plots
as inline SVG, provenance of every figure, the coverage ledger. No network: no CDN, no font,
no image or script from anywhere; the CSS and the few lines of JS that sort tables are inline.

>>> from dnnmap.fusion import partition
>>> from dnnmap.fusion.toy import residual_block
>>> from dnnmap.mapping import map_partition
>>> page = report_html(map_partition(partition(residual_block()), "h100-sxm5"))
>>> page.startswith("<!DOCTYPE html>"), "http://" in page.split("<svg")[0], page.count('<tr class="kernel"')
(True, False, 3)
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from dnnmap.hardware.schema import HardwareProfile
from dnnmap.mapping import Estimate
from dnnmap.report.envelope import SCHEMA_VERSION, dnnmap_version
from dnnmap.report.units import percent, seconds, si

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5d9de;padding-bottom:4px}
.sub{color:#5b6570;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px}
.card b{display:block;font-size:18px}.card span{color:#5b6570;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:12.5px}
th,td{border:1px solid #e1e4e8;padding:3px 6px;text-align:right;white-space:nowrap;vertical-align:top}
th{background:#eef1f4;cursor:pointer;position:sticky;top:0}th[aria-sort]::after{content:attr(data-arrow)}
td.l,th.l{text-align:left}td.name{white-space:normal;min-width:160px;max-width:420px;overflow-wrap:anywhere}
td.why{white-space:normal;min-width:320px;font-size:11.5px;color:#3d4650}
.scroll{max-height:560px;overflow:auto;border:1px solid #dde1e6}
.b-compute{color:#1a7f37}.b-memory{color:#b35900}.b-overhead,.b-host{color:#c62828}.b-power{color:#6f42c1}
figure{margin:0;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px}
figure svg{max-width:100%;height:auto}figcaption{color:#5b6570;font-size:12px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px;align-items:start}
ul.notes li{margin:2px 0}.ok{color:#1a7f37}.warn{color:#b35900}
footer{color:#8a939c;font-size:12px;margin-top:32px}
"""

# Click a header to sort by it (numbers by data-v, text otherwise); click again to reverse.
JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
    var asc=th.getAttribute('aria-sort')!=='ascending',body=t.tBodies[0];
    t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});
    th.setAttribute('aria-sort',asc?'ascending':'descending');th.dataset.arrow=asc?' \\u25B2':' \\u25BC';
    var rows=Array.prototype.slice.call(body.rows),key=function(r){var c=r.cells[i],v=c.dataset.v;
      return v!==undefined&&v!==''&&!isNaN(v)?parseFloat(v):c.textContent.toLowerCase()};
    rows.sort(function(a,b){var x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1)});
    rows.forEach(function(r){body.appendChild(r)});});});});
document.body.dataset.ready='1';
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _cell(text: Any, value: float | int | None = None, cls: str = "") -> str:
    v = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f' data-v="{value!r}"'
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}{v}>{_e(text)}</td>"


def _table(headers: Sequence[str], rows: Iterable[str], tid: str, left: Sequence[int] = (0,)) -> str:
    head = "".join(f'<th{" class=l" if i in left else ""}>{_e(h)}</th>' for i, h in enumerate(headers))
    return (f'<div class="scroll"><table id="{tid}" class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _cards(est: Estimate, cost: dict[str, Any] | None = None) -> str:
    priced = cost is not None and cost.get("usd_per_1000_inferences") is not None
    items = [*([(f"${cost['usd_per_1000_inferences']:.3g}", "per 1,000 inferences")] if priced else []),
        (seconds(est.latency_s), "latency"), (f"{est.throughput:,.1f}/s", "throughput"),
        (percent(est.flops_utilization, 2), "achieved / peak FLOP/s"), (percent(est.utilization), "utilization"),
        (f"{est.energy_j:.3g} J", "energy per inference"), (f"{est.average_power_w:,.0f} W", "average power"),
        (est.bound.value, "bound"), (str(len(est.subgraphs)), f"kernels ({est.mode})"),
        (si(est.flops, "FLOP"), "work"), (si(est.bytes, "B"), "bytes moved"),
    ]
    return '<div class="cards">' + "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>'
                                           for v, k in items) + "</div>"


def _summary(est: Estimate) -> str:
    rows = [f'<tr><td class="l">{_e(k)}</td>{_cell(v, v if isinstance(v, (int, float)) else None)}</tr>'
            for k, v in est.summary().items()]
    return _table(("metric", "value"), rows, "summary")


def _kernels(est: Estimate) -> str:
    when = {w.subgraph_id: w for w in est.schedule}
    rows = []
    for s in est.subgraphs:
        w = when.get(s.subgraph_id)
        ai = s.arithmetic_intensity
        prov = ", ".join(f"{k}: {v.value}" for k, v in s.provenance.items()) or "-"
        rows.append(
            '<tr class="kernel">' + _cell(s.subgraph_id, s.subgraph_id) + _cell(s.name, cls="l name")
            + _cell(s.op_class.value, cls="l") + _cell(s.bound.value, cls=f"l b-{s.bound.value}")
            + _cell(seconds(s.latency_s), s.latency_s) + _cell(seconds(s.compute_s), s.compute_s)
            + _cell(seconds(s.memory_s), s.memory_s) + _cell(seconds(s.overhead_s), s.overhead_s)
            + _cell(seconds(s.host_s), s.host_s) + _cell(seconds(w.start_s) if w else "-", w.start_s if w else None)
            + _cell(si(s.flops, "FLOP"), s.flops) + _cell(si(s.bytes, "B"), s.bytes)
            + _cell(f"{ai:.3g}" if math.isfinite(ai) else "n/a", ai) + _cell(si(s.achieved_flops, "FLOP/s"), s.achieved_flops)
            + _cell(percent(s.utilization, 0), s.utilization) + _cell(f"{s.energy_j:.3g} J", s.energy_j)
            + _cell(prov, cls="l") + _cell(s.explanation, cls="l why") + "</tr>")
    headers = ("#", "kernel", "class", "bound", "latency", "compute", "memory", "overhead", "host", "start",
               "FLOPs", "bytes", "FLOP/B", "achieved", "util", "energy", "figures", "why")
    return _table(headers, rows, "kernels", left=(1, 2, 3, 16, 17))


def _provenance(est: Estimate, profile: HardwareProfile | None) -> str:
    parts = [f"<p>Figures: <b>{_e(est.provenance.value)}</b>; {_e(percent(est.estimated_share, 0))} of the "
             "kernel time rests on a figure the profile marks as estimated.</p>"]
    if profile is not None:
        rows = [f'<tr><td class="l">{_e(k)}</td><td class="l name">{_e(v)}</td></tr>'
                for k, v in sorted(profile.sources.items())]
        parts.append(f"<p>Sources of the {_e(profile.display_name)} profile:</p>"
                     + _table(("field", "source"), rows, "sources", left=(0, 1)))
    return "".join(parts)


def _price(cost: dict[str, Any] | None) -> str:
    if not cost or cost.get("price_per_hour_usd") is None:
        return "<p>No device-hour price given (--price-per-hour, or price_per_hour_usd in the profile): no cost.</p>"
    tokens = (f", ${cost['usd_per_million_tokens']:.4g} per million tokens"
              if cost.get("usd_per_million_tokens") is not None else "")
    return (f'<p id="cost">Cost: ${cost["usd_per_1000_inferences"]:.4g} per 1,000 inferences{_e(tokens)} at '
            f'${cost["price_per_hour_usd"]:g} per device-hour ({_e(cost["price_source"])}).</p>')


def _ledger(est: Estimate) -> str:
    if not est.unknown_ops:
        return '<p class="ok" id="ledger">Every op has a cost rule: no op was counted as zero work.</p>'
    items = "".join(f"<li>{_e(u)}</li>" for u in est.unknown_ops)
    return (f'<div id="ledger"><p class="warn">{len(est.unknown_ops)} op kind(s) without a cost rule, '
            f"counted as zero work:</p><ul>{items}</ul></div>")


def report_html(est: Estimate, profile: HardwareProfile | None = None, svgs: Sequence[tuple[str, str]] | None = None,
                cost: dict[str, Any] | None = None) -> str:
    """The page; ``svgs`` are (caption, inline SVG) pairs (default: roofline, timeline, memory);
    ``cost`` is a :func:`dnnmap.hardware.price.cost` record (a card, and its price in provenance)."""
    if svgs is None:
        from dnnmap.report import plots

        svgs = [("Roofline: every kernel at its arithmetic intensity and achieved FLOP/s",
                 plots.svg_text(plots.roofline_figure(est, profile))),
                ("Schedule: host issue and device streams", plots.svg_text(plots.timeline_figure(est))),
                ("Bytes moved per memory level", plots.svg_text(plots.memory_figure(est)))]
    figures = "".join(f"<figure>{svg}<figcaption>{_e(cap)}</figcaption></figure>" for cap, svg in svgs)
    notes = "".join(f"<li>{_e(n)}</li>" for n in est.notes) or "<li>none</li>"
    title = f"{est.model} on {est.device}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)} — dnnmap</title>
<style>{CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<p class="sub">{_e(est.precision.value)}, batch {est.batch}, {_e(est.mode)} mode ({_e(est.strategy)} kernels), {_e(est.device_class)}</p>
{_cards(est, cost)}
<h2 id="plots">Plots</h2><div class="plots">{figures}</div>
<h2>Per kernel ({len(est.subgraphs)})</h2><p class="sub">Click a column to sort.</p>{_kernels(est)}
<h2>Summary</h2>{_summary(est)}
<h2>Provenance</h2>{_provenance(est, profile)}{_price(cost)}
<h2>Coverage ledger</h2>{_ledger(est)}
<h2>Notes</h2><ul class="notes">{notes}</ul>
<footer>dnnmap {_e(dnnmap_version())}, report schema {SCHEMA_VERSION}. Self-contained: nothing is loaded from the network.</footer>
</main><script>{JS}</script></body></html>
"""
