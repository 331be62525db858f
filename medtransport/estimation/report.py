"""A self-contained HTML page of a fit: audits, parameters, estimates, plots (inline PNG)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import xarray as xr
from jinja2 import Environment

__all__ = ["fit_report"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} — fit</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}.fail{color:#b00;font-weight:bold}.pass{color:#070}
td.l{text-align:left}</style></head><body>
<h1>{{ title }}</h1>
<p>Method <b>{{ method }}</b>, model {{ model }}; {{ n_subjects }} subjects,
{{ n_obs }} observations; OFV {{ "%.3f"|format(ofv) }}; residual error {{ residual }}.
Audit status: <span class="{{ 'pass' if passed else 'fail' }}">{{ status }}</span>.</p>
<h2>Audits</h2>
<table><tr><th>audit</th><th>measured</th><th>tolerance</th><th>verdict</th><th>detail</th></tr>
{% for r in audits %}<tr><td class="l">{{ r.name }}</td><td>{{ r.measured }}</td>
<td>{{ r.tolerance }}</td><td class="{{ 'pass' if r.passed else 'fail' }}">
{{ 'pass' if r.passed else 'FAIL' }}</td><td class="l">{{ r.detail }}</td></tr>{% endfor %}
</table>
{% if estimates %}<h2>Population estimates</h2>
<table><tr><th>estimate</th><th>value</th><th>SE</th><th>RSE %</th><th>unit</th></tr>
{% for e in estimates %}<tr><td class="l">{{ e[0] }}</td><td>{{ e[1] }}</td><td>{{ e[2] }}</td>
<td>{{ e[3] }}</td><td class="l">{{ e[4] }}</td></tr>{% endfor %}</table>
<p>Covariance step: {{ covariance }}</p>{% endif %}
<h2>Individual parameters (± posterior SE)</h2>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>
<p>η-shrinkage: {% for n, s in shrinkage %}{{ n }} {{ "%.1f"|format(100 * s) }} %
{%- if not loop.last %}, {% endif %}{% endfor %}</p>
{% if image %}<h2>Individual courses and goodness of fit</h2>
<img alt="fit plots" style="max-width:100%" src="data:image/png;base64,{{ image }}">{% endif %}
</body></html>
"""


def fit_report(ds: xr.Dataset, curves: dict[int, Any] | None = None) -> str:
    """The page for the fit result ``ds`` (with the plotted courses ``curves``)."""
    from medtransport.estimation.fit import summary_rows
    from medtransport.estimation.plots import fit_figure

    image = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        fig = Figure()
        fit_figure(ds, curves or {}, fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=70)
        image = base64.b64encode(buf.getvalue()).decode("ascii")
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        image = None
    report = json.loads(ds.attrs["audit_report"])
    audits = [{**r, "measured": f"{float(r['measured']):.3g}",
               "tolerance": f"{float(r['tolerance']):.3g}"} for r in report["results"]]
    estimates = []
    if "estimate" in ds.coords and "estimate_value" in ds:
        for i, name in enumerate(ds["estimate"].values):
            se = ds["estimate_se"].values[i] if "estimate_se" in ds else float("nan")
            rse = ds["estimate_rse"].values[i] if "estimate_rse" in ds else float("nan")
            estimates.append((str(name), f"{float(ds['estimate_value'].values[i]):.4g}",
                              f"{float(se):.3g}", f"{100 * float(rse):.1f}",
                              str(ds["estimate_unit"].values[i])))
    params = [str(v) for v in ds.data_vars if f"typical_{v}" in ds]
    env = Environment(autoescape=True)
    return env.from_string(_TEMPLATE).render(
        title=ds.attrs.get("title", "fit"), method=ds.attrs.get("method"),
        model=ds.attrs.get("model_id"), n_subjects=ds.attrs.get("n_subjects"),
        n_obs=ds.attrs.get("n_observations"), ofv=float(ds["ofv"]),
        residual=ds.attrs.get("residual_error_text", ds.attrs.get("residual_error")),
        passed=report["passed"],
        status=ds.attrs.get("audit_status"), audits=audits, estimates=estimates,
        covariance=ds.attrs.get("covariance_step", ""), columns=["ID", *params],
        rows=summary_rows(ds),
        shrinkage=list(zip(ds["eta"].values.tolist(), ds["eta_shrinkage"].values.tolist(),
                           strict=True)), image=image)
