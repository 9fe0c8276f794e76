"""The end-of-study tables on the terminal (rich)."""

from __future__ import annotations

from typing import Any, Optional

from deepdive.tune.rounding import format_params, format_sig

HISTORY_ROWS = 30


def _fmt(value: Any) -> str:
    return format_sig(value)


def study_line(fields: dict[str, Any]) -> str:
    """The ``tune.study`` event as one line: what is optimised, which way, why, and by what algorithms."""
    line = f"tuning {fields['study']}: {fields['direction']} {fields['metric']}"
    if fields.get("metric_source"):
        line += f" ({fields['metric_source']})"
    sampler, pruner = fields.get("sampler_label"), fields.get("pruner_label")
    if sampler or pruner:
        line += f"; sampler {sampler}; pruner {pruner}"
    if fields.get("patience_source"):
        line += f"; patience {patience_phrase(fields.get('patience'), fields['patience_source'])}"
    return line


def patience_phrase(patience: Optional[int], source: str, unit: str = "") -> str:
    """``"2 (the default)"`` (``unit`` after the number: ``"2 reports (the default)"``), or the source alone
    when patience is off (``"off: --patience 0"``)."""
    return f"{patience}{unit} ({source})" if patience else source


def budget_line(result: Any) -> Optional[str]:
    """Where the study stands against its budget (``--trials N``, shared by every process on it)."""
    n = getattr(result, "n_trials", None)
    if not n:
        return None
    here = f"{result.session_trials} of them ran in this process"
    if result.n_counted == n:
        return f"the study has its {n} trials; {here}"
    if result.n_counted > n:  # e.g. a rerun with a smaller --trials
        return f"the study has {result.n_counted} trials, more than --trials {n}; {here}"
    elsewhere = result.running_elsewhere
    if result.n_counted + elsewhere >= n:
        where = "another process" if elsewhere == 1 else "other processes"
        return (f"the study's {n} trials are all taken: {result.n_counted} finished, {elsewhere} still "
                f"running in {where}; {here}")
    also = f" ({elsewhere} running in other processes)" if elsewhere else ""
    return f"{result.n_counted} of the study's {n} trials finished{also}; {here}; a rerun continues the study"


def print_result(result: Any, console: Optional[Any] = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    trials = result.trials
    history = Table(title=f"study {result.study} · {result.metric} ({result.direction}) · {result.storage}")
    for column in ("#", "state", result.metric, "params", "time", "reason"):
        history.add_column(column, overflow="fold")
    shown = trials[-HISTORY_ROWS:]
    for t in shown:
        mark = "★ " if t["number"] == result.best_number else ""
        if getattr(result, "confirmed", None) and t["number"] == result.chosen_number:
            mark = "✓ " + mark  # the confirmed answer (--confirm)
        params = format_params(t["params"])
        duration = f"{t['duration_s']:.1f} s" if isinstance(t.get("duration_s"), (int, float)) else "—"
        history.add_row(f"{mark}{t['number']}", t["state"], _fmt(t["value"]), params, duration,
                        (t.get("reason") or "")[:120])
    if len(trials) > len(shown):
        history.caption = f"the last {len(shown)} of {len(trials)} trials"
    console.print(history)
    summary = (f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_fail} failed "
               f"in {result.seconds:.1f} s")
    if result.n_stopped:
        summary += f" ({result.n_stopped} of the complete stopped early by --patience)"
    if result.orphaned:
        summary += f"; {len(result.orphaned)} orphaned trial(s) of an interrupted run marked failed"
    if result.retried:
        summary += f"; retried {len(result.retried)} failed trial(s)"
    console.print(summary)
    how = [f"metric: {result.metric_source}"] if getattr(result, "metric_source", None) else []
    if getattr(result, "sampler", None):
        source = getattr(result, "patience_source", None)
        stop = f"; patience: {patience_phrase(getattr(result, 'patience', None), source, ' reports')}" if source else ""
        how.append(f"sampler: {result.sampler}; pruner: {result.pruner}{stop}")
    for line in how:
        console.print(line, soft_wrap=True, markup=False)
    budget = budget_line(result)
    if budget:
        console.print(budget, soft_wrap=True)  # one line, whatever the terminal's width (scripts grep it)
    if result.best_number is None:
        console.print("no complete trial yet")
        return
    best = Table(title=f"best: trial {result.best_number} · {result.metric} {_fmt(result.best_value)}")
    best.add_column("parameter")
    best.add_column("value")
    best.add_column("importance")
    for name, value in result.best_params.items():
        importance = result.importances.get(name)
        best.add_row(name, _fmt(value), f"{importance:.2f}" if importance is not None else "—")
    console.print(best)
    if result.importance_note:  # a line of its own: a caption would wrap to the narrow table's width
        console.print(result.importance_note, soft_wrap=True, markup=False)
    confirmed = getattr(result, "confirmed", None)
    if confirmed:
        print_confirmation(confirmed, result.metric, console)
    if getattr(result, "confirm_note", None):
        console.print(result.confirm_note, soft_wrap=True, markup=False)


def _ci(ci: Optional[list[float]]) -> str:
    return f"{format_sig(ci[0])} – {format_sig(ci[1])}" if ci else "—"


def print_confirmation(confirmed: dict[str, Any], metric: str, console: Any) -> None:
    """``--confirm``'s table: each candidate's search value, its value per fresh seed, mean and 95 % CI,
    the chosen one marked ✓, then the reason in one line."""
    from rich.table import Table

    seeds = confirmed["seeds"]
    span = f"{seeds[0]}..{seeds[-1]}" if seeds else "—"
    table = Table(title=f"Confirmed (top {confirmed['k']} re-trained with seeds {span})")
    for column in ("trial", f"search {metric}", *[f"seed {s}" for s in seeds], "mean", "95 % CI", "params"):
        table.add_column(column, overflow="fold")
    for c in confirmed["candidates"]:
        mark = "✓ " if c["number"] == confirmed["chosen"] else ""
        values = [_fmt(v) for v in c["values"]]
        table.add_row(f"{mark}{c['number']}", _fmt(c["search_value"]), *values, _fmt(c["mean"]), _ci(c["ci95"]),
                      format_params(c["params"]))
    if any(v is None for c in confirmed["candidates"] for v in c["values"]):
        table.caption = "—: that re-training failed (its reason was shown as it ended) or did not run; the mean is over the rest"
    console.print(table)
    console.print(confirmed["reason"], soft_wrap=True, markup=False)  # names the answer (✓) and why
