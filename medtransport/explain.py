"""``medtransport explain``: the five answers a reviewer asks of a model, for one scenario,
without running it — plus the ledger equation, the tolerances and the stability margins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtransport.model import Model


def explain(model: Model) -> Any:
    """A rich renderable (a table) describing ``model`` as configured by its scenario."""
    from rich.table import Table

    table = Table(title=f"{model.scenario.name} — {model.id} {model.version} "
                        f"(solver: {model.method})", title_justify="left", show_lines=True)
    table.add_column("question", style="bold")
    table.add_column("answer", overflow="fold")
    declared = model.initial_amounts()
    routes = model.routes()
    counted = "; ".join(f"{s.dimension} ({s.name}), state variable '{s.variable}'"
                        + (f" + '{s.outside}' beyond the cells" if s.outside else "")
                        for s in model.conserved)
    table.add_row("what is counted", counted)
    where = model.domain.describe()
    if model.n_patients is not None:
        where += f", in each of {model.n_patients} virtual patients"
    table.add_row("where", where)
    leaving = []
    for s in model.conserved:
        ways = routes.get(s.name) or ["nothing: the domain is closed"]
        leaving.append(f"{s.name}: " + "; ".join(ways))
    table.add_row("what may leave", "\n".join(leaving))
    tol = model.tolerance
    table.add_row("what is conserved",
                  "stored = initial + inflow + source − outflow − sink, for "
                  + ", ".join(s.name for s in model.conserved)
                  + f"; checked at every output time to rtol {tol.rtol:g}, atol {tol.atol:g}"
                  + (f", {tol.n_sigma:g} standard errors"
                     if model.method in model.stochastic_methods else ""))
    initial = []
    units = model.ledger_units()
    for s in model.conserved:
        q = declared[s.name]
        if q.magnitude is not None and getattr(q.magnitude, "ndim", 0) > 0:
            # one amount per virtual patient
            lo, hi = q.min(), q.max()
            line = f"{s.name}: {lo:~P} to {hi:~P} across {q.magnitude.size} patients"
        else:
            line = f"{s.name}: {q:~P}"
            if s.name in units:
                line += f" (= {q.to(units[s.name]):~P} in the ledger)"
        initial.append(line)
    table.add_row("how much it starts with", "\n".join(initial))
    margins = model.stability()
    table.add_row("stability margins", "\n".join(
        f"{m.name}: {m.detail} — {'ok' if m.passed else 'UNSTABLE: ' + m.fix}"
        for m in margins) or "none declared (the solver is unconditionally stable)")
    truncs = model.truncations()
    if truncs:
        table.add_row("series truncation", "\n".join(
            f"{getattr(t, 'name', 'series')}: {t.n_terms} terms, tail bound {t.tail_bound:.3g}"
            f" (tolerance {t.tolerance:.3g})" for t in truncs))
    from medtransport.display import duration

    tg = model.scenario.time
    # in the units a person says them in, not 864000 s
    table.add_row("time", f"{duration(tg.start.m_as('s'))} to {duration(tg.stop.m_as('s'))}, "
                          f"{tg.n_steps} steps of {duration(tg.dt)}, "
                          f"{len(tg.output_times())} outputs")
    return table
