"""The ``medtransport fit`` and ``medtransport recommend`` commands."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from medtransport.errors import ScenarioError

__all__ = ["fit_cmd", "recommend_cmd"]

_IMAGE = (".png", ".svg", ".pdf")
#: subjects listed in the printed table (all are in the result file)
MAX_ROWS = 20


def _check(path: str, option: str, suffixes: tuple[str, ...]) -> None:
    if Path(path).suffix.lower() not in suffixes:
        raise ScenarioError([(option, f"expected a file ending in {', '.join(suffixes)}, got "
                                      f"{path!r}")])
    parent = Path(path).parent
    if str(parent) and not parent.is_dir():
        raise ScenarioError([(option, f"the directory {parent} does not exist")])


def _parameter_table(ds: Any) -> Any:
    from rich.table import Table

    from medtransport.estimation.fit import summary_rows

    params = [str(v) for v in ds.data_vars if f"typical_{v}" in ds]
    table = Table(title=f"individual parameters ({ds.attrs['method']}; ± posterior SE)",
                  title_justify="left")
    for col in ["ID", *params]:
        table.add_column(col.replace("_", " "))
    rows = summary_rows(ds)
    for row in rows[:MAX_ROWS]:
        table.add_row(*row)
    if len(rows) > MAX_ROWS:
        table.add_row(f"… {len(rows) - MAX_ROWS} more", *([""] * len(params)))
    return table


def _estimates_table(ds: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"population estimates (FOCE-I), OFV {float(ds['ofv']):.3f}",
                  title_justify="left")
    for col in ("estimate", "value", "SE", "RSE %", "unit"):
        table.add_column(col)
    for i, name in enumerate(ds["estimate"].values):
        se = f"{float(ds['estimate_se'].values[i]):.4g}" if "estimate_se" in ds else "—"
        rse = f"{100 * float(ds['estimate_rse'].values[i]):.1f}" if "estimate_rse" in ds \
            else "—"
        value = float(ds["estimate_value"].values[i]) if "estimate_value" in ds else float("nan")
        table.add_row(str(name), f"{value:.4g}", se, rse, str(ds["estimate_unit"].values[i]))
    return table


@click.command("fit")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False),
              help="Levels (a NONMEM-format file) instead of the data section's path; the "
                   "section still gives the format and units. Without dose records, the "
                   "scenario's events are the doses.")
@click.option("--method", type=click.Choice(["map", "foce_i"]),
              help="map: each subject's parameters at the scenario's population values; "
                   "foce_i: estimate the population values (default: estimate.method, or map).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Result (.nc).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Individual courses and goodness-of-fit panels (PNG, SVG, PDF).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Self-contained HTML report of the fit.")
@click.option("--vpc", "vpc_path", type=click.Path(dir_okay=False),
              help="Visual predictive check of the fitted model (PNG, SVG, PDF).")
def fit_cmd(scenario: str, data_path: str | None, method: str | None, output: str | None,
            plot_path: str | None, report_path: str | None,
            vpc_path: str | None = None) -> None:
    """Fit SCENARIO to measured levels: MAP individual parameters, or FOCE-I estimates."""
    from medtransport.audit import AuditReport
    from medtransport.cli import _audit_table, _console
    from medtransport.errors import AuditFailure
    from medtransport.estimation.fit import fit_with_layout
    from medtransport.estimation.plots import courses, save_fit_plot
    from medtransport.results import write_atomically, write_netcdf

    if output:
        _check(output, "-o/--output", (".nc",))
    if plot_path:
        _check(plot_path, "--plot", _IMAGE)
    if report_path:
        _check(report_path, "--report", (".html",))
    if vpc_path:
        _check(vpc_path, "--vpc", _IMAGE)
    console = _console()
    try:
        ds, layout, problem = fit_with_layout(scenario, method=method, data=data_path)
    except AuditFailure as exc:
        if exc.report is not None:
            _console(stderr=True).print(_audit_table(exc.report, "fit audit (FAILED)"))
        raise
    report = AuditReport.from_json(ds.attrs["audit_report"])
    console.print(_audit_table(report, f"audit of the fit of {ds.attrs['title']!r}"))
    console.print(_parameter_table(ds))
    if "estimate" in ds.coords:
        console.print(_estimates_table(ds))
    n_sub, n_obs = int(ds.attrs["n_subjects"]), int(ds.attrs["n_observations"])
    console.print(f"OFV {float(ds['ofv']):.3f} ({n_sub} subject{'s' * (n_sub != 1)}, "
                  f"{n_obs} observation{'s' * (n_obs != 1)})")
    with contextlib.ExitStack() as files:
        png = None
        if plot_path or report_path:
            curves = courses(ds, layout)
        if plot_path:
            suffix = Path(plot_path).suffix
            png = files.enter_context(write_atomically(plot_path, suffix))
            save_fit_plot(ds, curves, str(png))
        if vpc_path:
            from medtransport.estimation.vpc import save_vpc_plot, vpc

            save_vpc_plot(vpc(problem), problem, str(files.enter_context(
                write_atomically(vpc_path, Path(vpc_path).suffix))),
                title=f"VPC of {ds.attrs['title']} ({ds.attrs['method']})")
        if output:
            write_netcdf(ds, files.enter_context(write_atomically(output, ".nc.tmp")))
        if report_path:
            from medtransport.estimation.report import fit_report

            html = fit_report(ds, curves)
            files.enter_context(write_atomically(report_path, ".html.tmp")).write_text(
                html, encoding="utf-8")
    written = ", ".join(p for p in (output, plot_path, report_path, vpc_path) if p)
    if written:
        click.echo(f"wrote {written}")


def _parse_target(text: str) -> tuple[str, float, float, str]:
    """``"auc24: 400..600 mg*h/L"`` → (metric, low, high, unit)."""
    from medtransport.units import ureg

    metric, _, rest = text.partition(":")
    metric = metric.strip().lower()
    if metric not in ("auc24", "trough", "peak") or not rest.strip():
        raise ScenarioError([("--target", f"expected 'auc24: 400..600 mg*h/L', 'trough: "
                                          f"10..15 mg/L' or 'peak: …', got {text!r}")])
    bounds, _, unit = rest.strip().partition(" ")
    low, sep, high = bounds.partition("..")
    try:
        lo, hi = float(low), float(high)
        u = ureg.parse_units(unit.strip())
    except Exception:
        raise ScenarioError([("--target", f"expected a range 'LOW..HIGH UNIT', got "
                                          f"{rest.strip()!r}")]) from None
    if not sep or not 0 <= lo < hi:
        raise ScenarioError([("--target", f"expected 0 ≤ LOW < HIGH, got {bounds!r}")])
    allowed = ("mg*h/L", "mmol*h/L") if metric == "auc24" else ("mg/L", "mmol/L")
    if not any(u.dimensionality == ureg.parse_units(a).dimensionality for a in allowed):
        raise ScenarioError([("--target", f"{metric} needs a unit like {' or '.join(allowed)}, "
                                          f"got {unit.strip()!r}")])
    return metric, lo, hi, str(u)


@click.command("recommend")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False),
              help="The patient's measured levels (see `medtransport fit`).")
@click.option("--target", "targets", multiple=True, required=True,
              help="Exposure target, e.g. 'auc24: 400..600 mg*h/L' or 'trough: 10..15 mg/L'; "
                   "repeat for several (all must be met).")
@click.option("--interval", "intervals", default="8h,12h,24h", show_default=True,
              help="Candidate dosing intervals, comma-separated.")
@click.option("--round", "round_to", default="250 mg", show_default=True,
              help="Doses are multiples of this.")
@click.option("--samples", default=1000, show_default=True, type=click.IntRange(100, 100_000),
              help="Posterior draws for the probability of target attainment.")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--posterior", type=click.Choice(["laplace", "sir"]), default="laplace",
              show_default=True, help="Draws from the Laplace approximation, or importance "
                                      "resampled to the exact posterior (sir).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Predicted course of the recommended regimen with its band and the levels.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The recommendation as NetCDF (.nc).")
def recommend_cmd(scenario: str, data_path: str | None, targets: tuple[str, ...],
                  intervals: str, round_to: str, samples: int, seed: int,
                  plot_path: str | None, output: str | None,
                  posterior: str = "laplace") -> None:
    """Recommend the dose (and interval) whose predicted exposure for this patient meets the
    target, with the probability of target attainment under the posterior."""
    from medtransport.cli import _audit_table, _console
    from medtransport.estimation.recommend import recommend, save_recommendation_plot
    from medtransport.results import write_atomically, write_netcdf
    from medtransport.units import parse_quantity

    if plot_path:
        _check(plot_path, "--plot", _IMAGE)
    if output:
        _check(output, "-o/--output", (".nc",))
    parsed = [_parse_target(t) for t in targets]
    try:
        taus = [float(parse_quantity(x.strip(), field="--interval").m_as("h"))
                for x in intervals.split(",") if x.strip()]
    except Exception as exc:
        raise ScenarioError([("--interval", f"expected times such as '8h,12h', got "
                                            f"{intervals!r} ({exc})")]) from None
    if not taus or min(taus) <= 0:
        raise ScenarioError([("--interval", "expected positive times, e.g. '8h,12h,24h'")])
    try:
        step = parse_quantity(round_to, field="--round")
    except Exception as exc:
        raise ScenarioError([("--round", str(exc))]) from None
    result = recommend(scenario, data=data_path, targets=parsed, intervals=taus,
                       round_to=step, n_samples=samples, seed=seed, posterior=posterior)
    console = _console()
    console.print(result.table())
    console.print(_audit_table(result.report, "audit of the recommended regimen's run"))
    console.print(result.sentence())
    with contextlib.ExitStack() as files:
        if plot_path:
            png = files.enter_context(write_atomically(plot_path, Path(plot_path).suffix))
            save_recommendation_plot(result, str(png))
        if output:
            write_netcdf(result.dataset(), files.enter_context(
                write_atomically(output, ".nc.tmp")))
    written = ", ".join(p for p in (output, plot_path) if p)
    if written:
        click.echo(f"wrote {written}")
