"""The end-of-study tables on the terminal (rich)."""

from __future__ import annotations

from typing import Any, Optional

HISTORY_ROWS = 30


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


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
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in t["params"].items())
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
    if result.importance_note:
        best.caption = result.importance_note
    console.print(best)
