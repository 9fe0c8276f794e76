"""The ``grad_compression="auto"`` decision: PowerSGD on or off, from the figures of the first measured steps.

:func:`decide_auto` reads :class:`deepdive.engine.commstats.CommStats` figures (averaged over ranks)
and returns the mode and one sentence naming the evidence; the engine's ``Run`` calls it after its
measured steps and reports the decision as a ``compression`` event.
"""

from __future__ import annotations

from typing import Any, Optional, Union

__all__ = ["decide_auto"]


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{seconds:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def decide_auto(
    stats_per_rank: Union[list[dict[str, Any]], dict[str, Any]],
    *,
    threshold: float = 0.2,
    min_bytes: int = 65536,
    trial: Optional[Union[list[dict[str, Any]], dict[str, Any]]] = None,
) -> tuple[str, str]:
    """Chooses ``grad_compression`` from the figures of the first measured steps.

    PowerSGD is chosen only when the job is bandwidth-bound: communication not hidden by backward
    above ``threshold`` of the step time, over a network (processes that all run on one host talk
    over loopback or shared memory, which no compression speeds up), with enough bytes per step
    that sending fewer of them shortens it (below ``min_bytes`` the cost is latency, to which
    PowerSGD's second round adds). Given ``trial`` (figures of a few steps run with PowerSGD after
    it was chosen), PowerSGD stays on only if it made the step at least 5 % shorter.

    Args:
        stats_per_rank (list[dict] | dict): one dict per rank (averaged here) or one averaged dict,
            with ``step_time_s``, ``comm_time_s``, ``comm_exposed_s``, ``comm_bytes_uncompressed``
            (means per step of uncompressed steps) and optionally ``backend`` and ``link``
            (:func:`deepdive.engine.topology.describe_topology`'s ``link``); ``world_size`` is
            required in a single dict and defaults to the list's length.
        threshold (float): exposed share of the step above which the job counts as bandwidth-bound.
        min_bytes (int): uncompressed bytes per step below which communication is latency-bound.
        trial (list[dict] | dict | None): ``step_time_s`` (per rank or averaged) measured with
            PowerSGD on, after its warm-up.

    Returns:
        tuple[str, str]: ``(mode, reason)``; mode is ``"powersgd"`` or ``"none"``, and the reason
        names the figures.

    Raises:
        ValueError: missing figures or a non-positive step time.
    """
    rows = [stats_per_rank] if isinstance(stats_per_rank, dict) else list(stats_per_rank)
    if not rows:
        raise ValueError("decide_auto needs the figures of at least one rank")
    needed = ("step_time_s", "comm_time_s", "comm_exposed_s", "comm_bytes_uncompressed")
    for row in rows:
        missing = [key for key in needed if key not in row]
        if missing:
            raise ValueError(
                f"decide_auto: figures lack {', '.join(missing)}: pass CommStats figures with step_time_s"
            )
    if isinstance(stats_per_rank, dict) and "world_size" not in stats_per_rank:
        raise ValueError("decide_auto: a single dict of figures needs world_size (or pass one dict per rank)")
    world = int(rows[0].get("world_size", len(rows)))
    if world <= 1:
        return "none", "single process: no gradient communication; compression off"

    def mean(key: str, of: list[dict[str, Any]]) -> float:
        return sum(float(row[key]) for row in of) / len(of)

    step, comm, exposed, nbytes = (mean(k, rows) for k in needed)
    if step <= 0:
        raise ValueError(f"decide_auto: step_time_s must be > 0, got {step}: measure at least one step")
    backend = rows[0].get("backend", "?")
    link = rows[0].get("link")
    share = exposed / step
    evidence = (
        f"{_ms(exposed)} of {_ms(step)} exposed, {_ms(comm)} in collectives, "
        f"{_bytes(nbytes)}/step, {backend}, {world} processes"
    )
    if share <= threshold:
        return "none", f"communication {share:.0%} of the step ({evidence}): not bandwidth-bound; compression off"
    if link == "loopback":
        return "none", (
            f"exposed communication {share:.0%} of the step ({evidence}), but every process is on this "
            f"host (loopback): no network bandwidth to save; compression off"
        )
    if nbytes < min_bytes:
        return "none", (
            f"exposed communication {share:.0%} of the step ({evidence}) but only {_bytes(nbytes)} per step: "
            f"latency-bound, compression would not shorten it; compression off"
        )
    if trial is None:
        return "powersgd", f"exposed communication {share:.0%} of the step ({evidence}): bandwidth-bound; PowerSGD on"
    trial_rows = [trial] if isinstance(trial, dict) else list(trial)
    if not trial_rows or any("step_time_s" not in row for row in trial_rows):
        raise ValueError("decide_auto: trial figures need step_time_s")
    with_psgd = mean("step_time_s", trial_rows)
    gain = 1.0 - with_psgd / step
    if gain >= 0.05:
        return "powersgd", (
            f"exposed communication {share:.0%} of the step ({evidence}); with PowerSGD the step took "
            f"{_ms(with_psgd)} instead of {_ms(step)} ({gain:.0%} shorter): PowerSGD on"
        )
    return "none", (
        f"exposed communication {share:.0%} of the step ({evidence}), but with PowerSGD the step took "
        f"{_ms(with_psgd)} instead of {_ms(step)}: no gain; compression off"
    )
