"""The study's choices: which metric, which direction, how a trial's value is taken, and why.

Each comes from the options when given, else from the study's record (a study remembers its
choices in a user attribute, so that a rerun continues the same search), else from the script
(:func:`deepdive.tune.metric.default_metric`: its evaluation, not the batch loss) or a default.
Options that contradict a study with results are refused in one line that says what to use
instead. Nothing here imports Optuna; the studies passed in are Optuna's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import attrs

from deepdive.tune.config import DEFAULT_PATIENCE, VALUE_MODES, StudyConfig
from deepdive.tune.errors import TuneError
from deepdive.tune.metric import default_metric, guess_direction

META_ATTR = "deepdive"  # the study's user attribute holding its choices (metric, direction, value, script)


@attrs.frozen
class StudyChoices:
    """What the study optimises and how a trial is scored; ``metric_source`` says where they came from."""

    metric: str
    direction: str
    metric_source: str
    value_mode: str
    patience: Optional[int] = None
    """Reports without a new best that end a trial (None: off)."""
    patience_source: str = ""
    """Where ``patience`` came from, in words (``"--patience 3"``, ``"the default"``, ...)."""


def recorded(existing: Any) -> dict[str, Any]:
    """The choices a stored study recorded (empty for a new study, or one made elsewhere)."""
    return dict(existing.user_attrs.get(META_ATTR, {})) if existing else {}


def choose(config: StudyConfig, script: str, study_name: str, meta: dict[str, Any], existing: Any) -> StudyChoices:
    """The study's choices from the options, its record ``meta`` and the script; ``existing``: the
    stored study, or None. Raises :class:`TuneError` when the options contradict the study."""
    metric, direction, source = _metric_and_direction(config, script, meta, existing)
    if existing is not None and existing.direction.name.lower() != direction:
        raise TuneError(f"study {study_name!r} exists with direction {existing.direction.name.lower()}: "
                        f"use another --study name or --direction {existing.direction.name.lower()}")
    value = config.value or meta.get("value")
    if config.patience is None:  # the default: on, unless the study scores trials by their last report
        if value == "last":
            patience, patience_source = None, ("off: --value last" if config.value else
                                               "off: the study scores trials by their last report")
        else:
            patience, patience_source = DEFAULT_PATIENCE, "the default"
    elif config.patience == 0:
        patience, patience_source = None, "off: --patience 0"
    else:
        patience, patience_source = config.patience, f"--patience {config.patience}"
    value = value or ("best" if patience else "last")
    if value not in VALUE_MODES:
        raise TuneError(f"--value must be one of {', '.join(VALUE_MODES)}, got {value!r}")
    if patience is not None and value != "best":
        raise TuneError(f"--patience ends a trial at its best report, but this study scores trials by their "
                        f"{value} one: use --value best (a new --study name if it has results) or --patience 0")
    if existing is not None and meta and meta.get("value", "last") != value and any(
            t.state.name == "COMPLETE" for t in existing.get_trials(deepcopy=False)):
        raise TuneError(f"study {study_name!r} scores each trial by its {meta.get('value', 'last')} value: "
                        f"use --value {meta.get('value', 'last')} or another --study name")
    return StudyChoices(metric, direction, source, value, patience, patience_source)


def record(study: Any, meta: dict[str, Any], choices: StudyChoices, script: str) -> None:
    """Record the choices in the study when they differ from its record ``meta`` (a rerun keeps them)."""
    if meta.get("metric") != choices.metric or meta.get("value", "last") != choices.value_mode:
        study.set_user_attr(META_ATTR, {"metric": choices.metric, "direction": choices.direction,
                                        "value": choices.value_mode, "script": Path(script).name})


def _metric_and_direction(config: StudyConfig, script: str, meta: dict[str, Any],
                          existing: Any) -> tuple[str, str, str]:
    """The study's metric and direction, and where they came from: the options, else the study's
    record, else the script (:func:`deepdive.tune.metric.default_metric`: not the batch loss)."""
    if config.metric:
        metric, source = config.metric, "--metric"
    elif meta.get("metric"):
        metric, source = meta["metric"], "the study's recorded metric"
    else:
        choice = default_metric(Path(script).read_text(encoding="utf-8"))
        if config.direction is None and not meta.get("direction") and existing is None:
            return choice.metric, choice.direction, f"from the script: {choice.source}"
        metric, source = choice.metric, f"from the script: {choice.source}"
    if config.direction:
        return metric, config.direction, f"{source}; --direction"
    if meta.get("direction"):
        return metric, meta["direction"], f"{source}; the study's direction"
    if existing is not None:
        return metric, existing.direction.name.lower(), f"{source}; the existing study's direction"
    return metric, guess_direction(metric), f"{source}; direction guessed from the name"
