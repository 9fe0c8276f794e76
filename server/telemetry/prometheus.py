"""The hub's ``/metrics`` page: Prometheus text exposition of the runs' latest numbers and the hub's counters.

The hub (:mod:`deepdive.telemetry.hub`, with ``prometheus=True``) keeps the latest numeric value of
each sample field per run and rank (:func:`latest_fields`) and renders them with its own counters
(:func:`metrics_text`). Non-finite values, which producers send as ``"NaN"``/``"Infinity"``/
``"-Infinity"``, are written as Prometheus spells them.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping

from deepdive.telemetry.history import History

#: The hub's counters that are exposed (as ``deepdive_hub_<name>_total``).
COUNTERS = ("ingested_messages", "ingested_samples", "ingested_events", "duplicate_messages", "seq_gaps",
            "producer_dropped_samples", "producer_dropped_events", "malformed_messages",
            "oversized_messages", "published_messages", "dropped_total", "refused_connections",
            "connections_total", "truncated_strings")

_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


def latest_fields(latest: dict[str, Any], samples: Iterable[dict]) -> None:
    """Merge the numeric fields of ``samples`` (oldest first) into ``latest``, by metric-safe name."""
    merged: dict = {}
    for entry in samples:
        merged.update(entry)
    for field, value in merged.items():
        if field in ("t", "run", "rank"):
            continue
        if isinstance(value, (int, float)) or value in ("NaN", "Infinity", "-Infinity"):
            latest[_METRIC_NAME.sub("_", field)] = value


def metrics_text(latest: Mapping[tuple[str, int], Mapping[str, Any]], stats: Mapping[str, int], history: History,
                 producers: int, subscriber_dropped: Iterable[tuple[int, int]]) -> str:
    """The Prometheus text exposition served at ``/metrics``.

    Args:
        latest: the latest numeric fields per ``(run, rank)``.
        stats: the hub's counters (:data:`COUNTERS` are exposed).
        history: the hub's snapshot history (its bytes and evictions).
        producers: ``/ingest`` connections now.
        subscriber_dropped: ``(id, dropped)`` per ``/stream`` connection now.

    Returns:
        str: ``deepdive_run_<field>{run="...",rank="..."}`` for the latest numeric value of each
        sample field of each run and rank, then the hub's counters (``deepdive_hub_<stat>_total``,
        ``deepdive_hub_history_evicted_{messages,entries,bytes}_total``,
        ``deepdive_hub_subscriber_dropped_total{subscriber=...}``), ``deepdive_hub_history_bytes`` and
        ``deepdive_hub_connections{path="ingest"|"stream"}``.
    """
    subscribers = list(subscriber_dropped)
    lines: list[str] = []
    by_field: dict[str, list[str]] = {}
    for (run, rank), fields in latest.items():
        labels = f'run="{_label(run)}",rank="{rank}"'
        for field, value in fields.items():
            by_field.setdefault(field, []).append(f"deepdive_run_{field}{{{labels}}} {_number(value)}")
    for field in sorted(by_field):
        lines.append(f"# TYPE deepdive_run_{field} gauge")
        lines.extend(by_field[field])
    for name in COUNTERS:
        lines.append(f"# TYPE deepdive_hub_{name}_total counter")
        lines.append(f"deepdive_hub_{name}_total {stats[name]}")
    for name, value in history.evicted.items():
        lines.append(f"# TYPE deepdive_hub_history_evicted_{name}_total counter")
        lines.append(f"deepdive_hub_history_evicted_{name}_total {value}")
    lines.append("# TYPE deepdive_hub_history_bytes gauge")
    lines.append(f"deepdive_hub_history_bytes {history.nbytes}")
    lines.append("# TYPE deepdive_hub_connections gauge")
    lines.append(f'deepdive_hub_connections{{path="ingest"}} {producers}')
    lines.append(f'deepdive_hub_connections{{path="stream"}} {len(subscribers)}')
    lines.append("# TYPE deepdive_hub_subscriber_dropped_total counter")
    for ident, dropped in subscribers:
        lines.append(f'deepdive_hub_subscriber_dropped_total{{subscriber="{ident}"}} {dropped}')
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value == "NaN":
        return "NaN"
    if value == "Infinity":
        return "+Inf"
    if value == "-Infinity":
        return "-Inf"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
    return repr(value)
