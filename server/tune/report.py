"""The end-of-study tables on the terminal (rich)."""

from __future__ import annotations

from typing import Any, Optional

HISTORY_ROWS = 30


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


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
