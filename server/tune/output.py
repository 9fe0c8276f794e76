"""What a study shows while it runs: its ``tune.*`` events and the job's progress line.

Events go to the hub through the engine's reporter (the dashboard's Tune view, and the file sink
``DEEPDIVE_METRICS_OUT``) and to ``StudyConfig.on_event`` (the CLI's progress bar, the Python API):
``tune.study`` (what is optimised, by what), ``tune.trial`` (one trial's state, parameters and
intermediate values, at most every ``EMIT_PERIOD`` seconds for reports), ``tune.best``,
``tune.importance``, with ``--confirm`` ``tune.confirm`` (one re-training ended) and ``tune.confirmed``
(the confirmation, :mod:`deepdive.tune.confirm`), and ``tune.done``. The job's progress
(``deepdive.jobs.events``) says "trial K/N · best V" for the editor's job list, then "confirming: D/T
re-trainings".
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from deepdive.tune.budget import REASON_ATTR
from deepdive.tune.rounding import format_sig

MAX_INTERMEDIATE = 200  # the newest intermediate values a tune.trial event carries
EMIT_PERIOD = 0.2  # at most 5 tune.trial events a second per trial for intermediate values


class StudyOutput:
    """The study's events and progress (see the module's docstring); :meth:`connect` opens the hub's side."""

    def __init__(self, study_name: str, n_trials: int,
                 on_event: Optional[Callable[[str, dict[str, Any]], None]]) -> None:
        self.study_name = study_name
        self.n_trials = n_trials
        self.on_event = on_event
        self.reporter: Any = None

    def connect(self) -> None:
        """Open the engine's reporter (the hub, or the file sink, as the environment says)."""
        from deepdive.engine.reporter import Reporter

        self.reporter = Reporter.from_env(f"tune-{self.study_name}", 0)

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()

    def emit(self, kind: str, **fields: Any) -> None:
        if self.reporter is not None and self.reporter.enabled:
            self.reporter.event(kind, **fields)
        if self.on_event is not None:
            self.on_event(kind, fields)

    def trial(self, number: int, state: str, params: dict[str, Any], value: Optional[float],
              values: dict[int, float], reason: Optional[str], worker: Optional[int],
              waiting_reason: Optional[str], duration_s: Optional[float]) -> None:
        """A ``tune.trial`` event: ``values`` are its intermediate values by step (the newest are sent)."""
        inter = [[step, v] for step, v in sorted(values.items())][-MAX_INTERMEDIATE:]
        self.emit("tune.trial", study=self.study_name, number=number, state=state, params=dict(params),
                  value=value, intermediate=inter, reason=reason, worker=worker,
                  waiting_reason=waiting_reason, duration_s=duration_s)

    def history(self, study: Any, most: int = 200) -> None:
        """The study's finished trials (a resumed study), so that the dashboard shows all of it."""
        for frozen in study.get_trials(deepcopy=False)[-most:]:
            if not frozen.state.is_finished():
                continue
            duration = (frozen.datetime_complete - frozen.datetime_start).total_seconds() \
                if frozen.datetime_complete and frozen.datetime_start else None
            self.trial(frozen.number, frozen.state.name.lower(), frozen.params, frozen.value,
                       frozen.intermediate_values, frozen.system_attrs.get(REASON_ATTR), None, None, duration)

    def confirm_progress(self, done: int, total: int) -> None:
        """The confirmation phase (``--confirm``): ``done`` of ``total`` re-trainings, to the job and to ``on_event``."""
        from deepdive.jobs import events

        events.progress(done / total if total else 1.0, f"confirming: {done}/{total} re-trainings")
        if self.on_event is not None:
            self.on_event("progress", {"phase": "confirming", "done": done, "total": total})

    def progress(self, done: int, best: Optional[float]) -> None:
        """``done`` of N trials counted, and the best value so far, to the job and to ``on_event``."""
        from deepdive.jobs import events

        shown = f" · best {format_sig(best)}" if best is not None else ""
        fraction = min(1.0, done / self.n_trials)
        events.progress(fraction, f"trial {min(done + 1, self.n_trials)}/{self.n_trials}{shown}"
                        if done < self.n_trials else f"{done}/{self.n_trials} trials{shown}")
        if self.on_event is not None:
            self.on_event("progress", {"done": done, "total": self.n_trials, "best": best})
