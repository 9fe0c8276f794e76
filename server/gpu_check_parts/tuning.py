"""The ``tune_pack`` part: ``deepdive tune --pack`` runs several trials on one GPU at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from deepdive.gpu_check_parts.context import Context


def _concurrency(events: list[tuple[str, dict[str, Any]]]) -> int:
    """The most workers running a trial at once, from the study's ``tune.trial`` events.

    Per worker, not per trial: a worker that finishes may start its next trial before the finished
    one's last event is sent, and the last intermediate values can follow a trial's end."""
    busy: dict[int, int] = {}  # worker -> the trial it runs
    ended: set[int] = set()
    most = 0
    for kind, fields in events:
        if kind != "tune.trial" or fields.get("worker") is None:
            continue
        number, worker = fields["number"], fields["worker"]
        if fields["state"] in ("complete", "pruned", "fail"):
            ended.add(number)
            if busy.get(worker) == number:
                del busy[worker]
        elif fields["state"] == "running" and number not in ended:
            busy[worker] = number
        most = max(most, len(busy))
    return most


def tune_pack(ctx: Context) -> dict[str, Any]:
    """``deepdive tune --pack``: three workers on one GPU, as many running at once as its memory allows."""
    import deepdive.examples
    from deepdive.tune.study import StudyConfig, run_study

    script = Path(deepdive.examples.__file__).parent / "digits.py"
    workspace = ctx.work_dir / "tune"
    workspace.mkdir(parents=True)
    events: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        with lock:
            events.append((kind, {k: fields.get(k) for k in ("state", "number", "worker", "waiting_reason")}))

    config = StudyConfig(str(script), n_trials=6, parallel=3, pack=True, metric="accuracy", direction="maximize",
                         pruner="none", seed=0, workspace=str(workspace),
                         storage=f"sqlite:///{workspace / 'tune.db'}", script_args=["--epochs", "3"],
                         reuse_workers=False, on_event=on_event)
    result = run_study(config)
    waits = sorted({f["waiting_reason"] for k, f in events if k == "tune.trial" and f.get("waiting_reason")})
    detail = {"complete": result.n_complete, "failed": result.n_fail, "best_accuracy": result.best_value,
              "most_at_once": _concurrency(events), "startup_s": result.startup_seconds,
              "trials_span_s": result.trials_span_seconds, "waiting_reasons": waits[:4],
              "failures": [t.get("reason") for t in result.trials if t.get("state") == "fail"][:3]}
    ctx.expect(result.n_complete == 6 and not result.n_fail, f"{result.n_complete} of 6 trials complete", **detail)
    ctx.expect(detail["most_at_once"] >= 2, "the trials never ran together: --pack ran one at a time", **detail)
    ctx.measure("tune_pack_trials_span", result.trials_span_seconds or 0.0, "s", trials=6, workers=3,
                most_at_once=detail["most_at_once"])
    return detail
