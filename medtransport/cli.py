"""The ``medtransport`` command.

    medtransport run SCENARIO [-o OUT.nc|.csv|.zarr] [--data FILE] [--plot OUT.png]
                     [--report REPORT.html]
    medtransport report RESULT.nc -o REPORT.html
    medtransport models
    medtransport schema [MODEL] [--write [--dir schemas]]
    medtransport explain SCENARIO
    medtransport audit SCENARIO
    medtransport new-plugin NAME [--directory DIR]

Exit codes: 0 success; 1 an audit failed (no result written); 2 bad input (scenario, options,
units); 3 a plugin or model failed; 70 an internal error. Errors are one paragraph on stderr,
without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from medtransport.errors import (
    AuditFailure,
    MedtransportError,
    ModelError,
    PluginError,
    ScenarioError,
    UnitError,
)

EXIT_AUDIT, EXIT_INPUT, EXIT_PLUGIN, EXIT_INTERNAL = 1, 2, 3, 70


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output gets a wide table rather than rich's 80-column default.
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


class _Exit(SystemExit):
    """The command's own exit (after its error message); any other SystemExit came from
    code that should not end the process (a plugin's), and is an error."""


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise _Exit(code)


class _Group(click.Group):
    """Turns the package's errors into one paragraph and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except AuditFailure as exc:
            if debug:
                raise
            _fail(str(exc), EXIT_AUDIT)
        except (ScenarioError, UnitError) as exc:
            if debug:
                raise
            _fail(str(exc), EXIT_INPUT)
        except (PluginError, ModelError) as exc:
            if debug:
                raise
            _fail(str(exc), EXIT_PLUGIN)
        except MedtransportError as exc:
            if debug:
                raise
            _fail(str(exc), EXIT_INPUT)
        except KeyboardInterrupt:
            _fail("interrupted; nothing was written", 130)
        except _Exit:
            raise
        except MemoryError:
            if debug:
                raise
            _fail("the run ran out of memory (beyond the estimate checked before it started); "
                  "use fewer cells (domain.cells) or output less often (time.output_every), "
                  "and run a population in chunks (--population N --store OUT.zarr); nothing "
                  "was written", EXIT_INPUT)
        except BaseException as exc:  # a stray SystemExit too: never exit 0 on a failed run
            if debug:
                raise
            from medtransport.isolation import describe

            _fail(f"internal error: {describe(exc)} (run with --debug for the "
                  "traceback, and please report it)", EXIT_INTERNAL)


    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Click's usage errors (an unknown option, a missing argument) as one paragraph on
        stderr like every other error — ``error: …; see 'medtransport run --help'`` — exit 2."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        no_args = getattr(click.exceptions, "NoArgsIsHelpError", ())
        try:
            value = super().main(*args, standalone_mode=False, **kwargs)
        except no_args as exc:  # `medtransport` alone: the help, as click shows it
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message(),
                       err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            text = " ".join(exc.format_message().split())
            text = (text[:1].lower() + text[1:]).replace(". (", " (").rstrip(".")
            text = text.replace("(Did you mean", "(did you mean").replace(
                ". Did you mean", "; did you mean")
            path = exc.ctx.command_path if exc.ctx is not None else "medtransport"
            _fail(f"{text}; see '{path} --help'", exc.exit_code)
        except click.ClickException as exc:
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except click.exceptions.Abort:
            _fail("aborted; nothing was written", 1)
        sys.exit(value if isinstance(value, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="medtransport")
def main(debug: bool) -> None:
    """Audited transport models in medicine: no result leaves unless its books balance."""


# ------------------------------------------------------------------------------ helpers

def _progress_bar(label: str) -> tuple[Callable[[float], None], Callable[[], None]]:
    """A progress callback, and a bar on stderr that appears once a run has taken 2 s (a timer
    starts it, so solvers that report progress rarely still show that they are working)."""
    import threading

    state: dict[str, Any] = {"fraction": 0.0}
    lock = threading.Lock()

    def show() -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with lock:
            if state.get("closed"):
                return
            bar = Progress(TextColumn("{task.description}"), BarColumn(),
                           TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                           TextColumn("ETA"), TimeRemainingColumn(),
                           transient=True, console=_console(stderr=True))
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task(label, total=1.0, completed=state["fraction"])

    timer = threading.Timer(2.0, show)
    timer.daemon = True
    if sys.stderr.isatty():
        timer.start()

    def update(fraction: float) -> None:
        with lock:
            state["fraction"] = min(max(fraction, 0.0), 1.0)
            if "bar" in state:
                state["bar"].update(state["task"], completed=state["fraction"])

    def close() -> None:
        timer.cancel()
        with lock:
            state["closed"] = True
            if "bar" in state:
                state["bar"].stop()

    return update, close


def _audit_table(report: Any, title: str, model: Any = None) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from medtransport.audit.wording import check_in_words
    from medtransport.display import DisplayUnits

    display = DisplayUnits(model) if model is not None else None
    table = Table(title=escape(title), title_justify="left")
    # the check in words ("minimum 0 mg ≥ −4.2e-07 mg"), not a bare tolerance to decode
    for col in ("audit", "stage", "check", "verdict", "detail"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        verdict = "[green]pass[/green]" if r.passed else "[bold red]FAIL[/bold red]"
        detail = r.detail + (f" (at {r.where})" if r.where and not r.passed else "")
        table.add_row(escape(r.name), r.stage, escape(check_in_words(r, display)), verdict,
                      escape(detail))
    return table


def _run(scenario: Any, label: str) -> tuple[Any, Any]:
    """Run SCENARIO (a path, or a model :func:`prepare` already built) with a progress bar."""
    from medtransport.runner import prepare, run

    model = prepare(scenario) if isinstance(scenario, str) else scenario
    update, close = _progress_bar(label)
    try:
        ds = run(model, progress=update)
    finally:
        close()
    return model, ds


def _plugin_notes(model_id: str) -> None:
    """Tell the user what the plugin manager decided that concerns this run: a plugin refused
    for registering the model's id again, a broken audits hook skipped."""
    from medtransport.plugins import get_registry

    reg = get_registry()
    holder = reg.models[model_id].plugin if model_id in reg.models else "none"
    for plugin in reg.collisions.get(model_id, []):
        click.echo(f"warning: plugin {plugin} also registers the model id {model_id!r}; it was "
                   f"refused, and the model of plugin {holder} is used", err=True)
    for text in reg.warnings:
        click.echo(f"warning: {text}", err=True)
    reg.warnings.clear()


def _check_target(path: str, option: str, image: bool = False, result: bool = False) -> None:
    """Refuse an output path that cannot be written, naming the option that gave it; a
    ``result`` path must also have one of the extensions that name a format."""
    from medtransport.export import is_zarr_store, output_format

    target = Path(path)
    problem = None
    kind = None
    if result and not (target.is_dir() and target.suffix.lower() != ".zarr"):
        try:
            kind = output_format(target)
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        pass
    elif kind == ".zarr" and target.exists():
        if not is_zarr_store(target):  # an existing store is replaced; anything else is not
            problem = f"{path} exists and is not a Zarr store"
    elif target.is_dir():
        problem = f"{path} is a directory, expected a file path"
    elif not (target.parent if str(target.parent) else Path(".")).is_dir():
        problem = f"the directory {target.parent} does not exist"
    elif image:
        from matplotlib.backend_bases import FigureCanvasBase

        kinds = FigureCanvasBase.get_supported_filetypes()
        kind = target.suffix.lower().lstrip(".") or "png"
        if kind not in kinds:
            problem = (f"cannot write a {kind!r} image; use one of "
                       f"{', '.join(sorted(kinds))}")
    if problem is None:
        return
    if option == "output.path":
        raise ScenarioError([(option, problem)])
    raise click.BadParameter(problem, param_hint=f"'{option}'")


def _summary_table(title: str, columns: list[str], rows: list[list[str]]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for col in columns:
        table.add_column(escape(col), overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))
    return table


def _with_data(scenario: str, data_path: str) -> Any:
    """SCENARIO with its data section's path replaced by ``data_path`` (a path relative to
    the working directory); the section's other keys (format, units …) still apply."""
    from medtransport.scenario import load_scenario

    sc = load_scenario(scenario)
    if sc.data is None:
        raise ScenarioError([("data", "--data replaces the path of the scenario's data "
                                      "section, and this scenario has none (the section gives "
                                      "the file's format and units)")], source=scenario)
    section = json.loads(sc.data.model_dump_json(exclude_none=True, round_trip=True))
    return sc.with_changes(data={**section, "path": str(Path(data_path).resolve())})


# ------------------------------------------------------------------------------ commands

def _allow_paths(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    # Held for the whole command: the context exits it when the command ends.
    from medtransport.trust import allow_paths

    ctx.with_resource(allow_paths(value))


_ALLOW_PATH = click.option(
    "--allow-path", "allow_path", multiple=True, metavar="DIR", expose_value=False,
    type=click.Path(file_okay=False, exists=True), callback=_allow_paths,
    help="Let the scenario read input files under DIR too (default: only the scenario's "
         "directory tree). Repeatable.")


def _requested_threads(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # For the whole command; the previous request comes back when it ends.
    from medtransport.numerics import threads

    if value is None or value.strip().lower() == "auto":
        return
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"expected a positive integer or 'auto', got {value!r} "
                                 f"(from --threads or {threads.ENV})")
    ctx.with_resource(threads.requested_for(n))


_THREADS = click.option(
    "--threads", metavar="N|auto", default=None, expose_value=False, envvar="MEDTRANSPORT_THREADS",
    callback=_requested_threads,
    help="Threads for the threaded kernels (default auto: the cores other processes leave "
         "free; also MEDTRANSPORT_THREADS). Results do not depend on it.")


@main.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(),
              help="Result to write, its format by its extension: .nc (NetCDF), .csv (the "
                   "record table, or the time series; units in the header), .zarr (Zarr "
                   "store). Default: the scenario's output.path, if any.")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False),
              help="Data set to run instead of the one the scenario's data section names "
                   "(that section still gives its format and units).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Image file for the model's plot (PNG, SVG, PDF).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Self-contained HTML audit report to write (also when an audit fails).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
@click.option("--population", "population", type=click.IntRange(min=1), metavar="N",
              help="Run N virtual patients in audited chunks streamed to --store (Zarr); -o "
                   "then writes the summaries, --plot the percentile bands.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run the population's chunks on a dask.distributed scheduler at ADDRESS, "
                   "or 'local' for a 2-worker LocalCluster.")
@click.option("--chunk-size", "chunk_size", type=click.IntRange(min=1),
              help="Patients per chunk (default: from the output grid's size).")
@click.option("--store", type=click.Path(file_okay=False),
              help="Zarr directory of a population run; an existing one is resumed.")
@click.option("--overwrite", is_flag=True,
              help="Start the population store afresh; replace an output file that is not a "
                   "medtransport result.")
@_ALLOW_PATH
@_THREADS
def run_cmd(scenario: str, output: str | None, plot_path: str | None, quiet: bool,
            report_path: str | None = None, population: int | None = None,
            scheduler: str | None = None, chunk_size: int | None = None,
            store: str | None = None, overwrite: bool = False,
            data_path: str | None = None) -> None:
    """Run SCENARIO, audit it, print the audit table and write the result."""
    if population or scheduler or chunk_size or store:
        from medtransport.batch import population_command

        if output:
            _check_target(output, "-o/--output", result=True)
        if data_path:
            raise click.BadParameter("a chunked population (--population/--store) runs "
                                     "virtual patients, not a data set's subjects; a data "
                                     "set's variability is the scenario's population section",
                                     param_hint="'--data'")
        from medtransport.report import population_report

        with population_report(store, report_path, click.echo, scenario):
            population_command(scenario, n=population, scheduler=scheduler,
                               chunk_size=chunk_size, store=store, overwrite=overwrite,
                               output=output, plot_path=plot_path, echo=click.echo)
        return
    from medtransport.audit import AuditReport
    from medtransport.export import staged, write_result
    from medtransport.results import write_atomically
    from medtransport.runner import prepare

    console = _console()
    if output:  # a wrong extension is refused before the scenario is even read
        _check_target(output, "-o/--output", result=True)
    model = prepare(_with_data(scenario, data_path) if data_path else scenario)
    _plugin_notes(model.id)
    target = output or model.scenario.output.path
    # Before a long run, not after it: where the results go must be writable.
    if target:
        from medtransport.trust import output_path

        option = "-o/--output" if output else "output.path"
        target = str(output_path(target, option=option, scenario_dir=model.scenario.source_dir,
                                 overwrite=overwrite))
        _check_target(target, option, result=True)
    if plot_path:
        _check_target(plot_path, "--plot", image=True)
    if report_path:
        _check_target(report_path, "--report")
    try:
        model, ds = _run(model, "simulating")
    except AuditFailure as exc:
        if exc.report is not None and not quiet:
            _console(stderr=True).print(_audit_table(exc.report, "audit (FAILED)", model))
        if report_path and exc.report is not None:
            from medtransport.report import report_from_failure, scenario_source

            report_from_failure(exc, report_path, model=model,
                                scenario_text=scenario_source(scenario, model))
            click.echo(f"wrote the failed run's report to {report_path}", err=True)
        raise
    _plugin_notes(model.id)
    report = AuditReport.from_json(ds.attrs["audit_report"])
    if not quiet:
        console.print(_audit_table(report, f"audit of {model.scenario.name!r} ({model.id}, "
                                           f"{model.method})", model))
    # Both files are written to temporary names and renamed only once both are complete, so a
    # failing plot cannot leave a NetCDF behind (nor the reverse).
    with contextlib.ExitStack() as files:
        if target:
            from medtransport.report import scenario_source

            # the scenario file as written, comments too, for `medtransport report`
            source = scenario_source(scenario, model)
            if source is not None:
                ds.attrs["scenario_source"] = source
            from medtransport.display import DisplayUnits

            # a CSV table in the units people read (time [h], the scenario's mg)
            write_result(ds, files.enter_context(staged(target)), Path(target).suffix.lower(),
                         DisplayUnits(model))
        if plot_path:
            from medtransport.plotting import save_plot

            suffix = Path(plot_path).suffix or ".png"
            save_plot(model, ds, str(files.enter_context(write_atomically(plot_path, suffix))))
        if report_path:
            from medtransport.report import render_report, scenario_source

            html = render_report(ds, model=model, scenario_text=scenario_source(scenario, model))
            files.enter_context(write_atomically(report_path, ".html.tmp")).write_text(
                html, encoding="utf-8")
    # a model may export further files (e.g. parameter maps as NIfTI) — only now, after its
    # audits passed
    exported = [str(p) for p in getattr(model, "export", lambda _ds: [])(ds)]
    summary = model.summary(ds)
    if summary is not None and not quiet:
        console.print(_summary_table(*summary))
    written = ", ".join([p for p in (target, plot_path, report_path) if p] + exported) or \
        "nothing (no -o given)"
    console.print(f"{report.summary()}; wrote {written}")


@main.command("audit")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_ALLOW_PATH
@_THREADS
def audit_cmd(scenario: str, as_json: bool) -> None:
    """Run SCENARIO and print its full audit report; exit 1 if any audit fails."""
    from medtransport.audit import AuditReport

    try:
        model, ds = _run(scenario, "auditing")
        report = AuditReport.from_json(ds.attrs["audit_report"])
    except AuditFailure as exc:
        if exc.report is None:
            raise
        if as_json:
            click.echo(exc.report.to_json())
        else:
            _console().print(_audit_table(exc.report, "audit report (FAILED)"))
        _fail(exc.report.summary(), EXIT_AUDIT)
    if as_json:
        click.echo(report.to_json())
    else:
        _console().print(_audit_table(report, "audit report", model))
        _console().print(report.summary())


@main.command("report")
@click.argument("result", type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HTML file to write (self-contained: styles and images embedded).")
@click.option("--scenario-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Accepted for compatibility and not used: the report is made from "
                   "the file alone, without reading the inputs its scenario names.")
def report_cmd(result: str, output: str, scenario_dir: str | None) -> None:
    """Write the audit report of RESULT (a NetCDF file from `medtransport run`, or a chunked
    population's store) as one self-contained HTML page."""
    from medtransport.report import report_from_file

    _check_target(output, "-o/--output")
    click.echo(f"wrote {report_from_file(result, output, scenario_dir=scenario_dir)}")


@main.command("models")
def models_cmd() -> None:
    """List the registered models and any plugin that failed to load."""
    from rich.table import Table

    from medtransport.plugins import get_registry

    reg = get_registry()
    table = Table(title="registered models", title_justify="left")
    for col in ("id", "version", "plugin", "title"):
        table.add_column(col)
    for mid, m in sorted(reg.models.items()):
        table.add_row(mid, m.spec.version, f"{m.plugin} {m.plugin_version}", m.spec.title)
    console = _console()
    console.print(table)
    from rich.markup import escape

    for b in reg.broken:
        console.print(f"[red]broken plugin[/red] {escape(b.name)} {escape(b.version)}: "
                      f"{escape(b.reason)}")
    for name, reason in sorted(reg.probe_audit_hooks().items()):
        console.print(f"[red]broken hook[/red] medtransport_audits of {escape(name)} "
                      f"(skipped for models of other plugins): {escape(reason)}")


@main.command("schema")
@click.argument("model", required=False)
@click.option("--write", is_flag=True, help="Regenerate every schema file in --dir.")
@click.option("--dir", "directory", default="schemas", show_default=True,
              type=click.Path(file_okay=False))
def schema_cmd(model: str | None, write: bool, directory: str) -> None:
    """Print the JSON Schema of scenarios, or of MODEL's parameters; --write regenerates all."""
    from medtransport.schema import model_schema, scenario_schema, write_schemas

    if write:
        for path in write_schemas(Path(directory)):
            click.echo(f"wrote {path}")
        return
    schema = model_schema(model) if model else scenario_schema()
    click.echo(json.dumps(schema, indent=2, ensure_ascii=False))


@main.command("explain")
@click.argument("scenario", type=click.Path(dir_okay=False))
@_ALLOW_PATH
def explain_cmd(scenario: str) -> None:
    """The five answers for SCENARIO, its ledger terms and stability margins (no run)."""
    from medtransport.explain import explain
    from medtransport.isolation import plugin_boundary
    from medtransport.plugins import get_registry
    from medtransport.runner import prepare
    from medtransport.trust import describing

    # "no run": a scenario named inside this one (an input) is not run either.
    with describing("explain"):
        model = prepare(scenario)
    reg = get_registry()
    plugin, version = reg.plugin_of(model.id) if model.id in reg.models else ("?", "?")
    with plugin_boundary(plugin, version, f"model {model.id} while being explained"):
        table = explain(model)
    _console().print(table)


@main.command("new-plugin")
@click.argument("name")
@click.option("-d", "--directory", type=click.Path(file_okay=False),
              help="Where to write the package (default: ./medtransport-NAME).")
def new_plugin_cmd(name: str, directory: str | None) -> None:
    """Scaffold a plugin package NAME (a model, tests, a scenario) that passes the suite."""
    from medtransport.scaffold import scaffold

    done = scaffold(name, directory)
    click.echo(f"created {done.directory}/ — plugin {done.name!r}, model {done.model_id}")
    for path in done.files:
        click.echo(f"  {path.relative_to(done.directory)}")
    click.echo("next (medtransport itself installed in this environment, see the "
               f"README):\n  cd {done.directory}\n  pip install -e .\n  medtransport models\n"
               "  pytest")


# Estimation's commands live with estimation (imported here so that they are registered).
from medtransport.estimation.commands import fit_cmd, recommend_cmd  # noqa: E402

main.add_command(fit_cmd)
main.add_command(recommend_cmd)
