"""Choosing the checkpoint a run resumes from: the newest intact one, saying what was passed over.

A resume tries the checkpoints from the most recently saved to the oldest and takes the first that
loads, which means its manifest passes its checksum and every chunk decodes to its hash (see
:meth:`Store.load <deepdive.engine.ckpt.Store.load>`). Each newer checkpoint that failed is
*skipped*, with the reason. Checkpoints saved before ``since`` (``deepdive train --fresh``: the
time the job started) are *ignored*: not tried, not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from deepdive.engine.ckpt.store import CheckpointError, StateMismatch, Store

_LISTED = 3   # damaged checkpoints named in the one-line error; the rest are counted


@dataclass
class Choice:
    """The outcome of :func:`newest_intact`."""

    name: Optional[str] = None                  # the checkpoint loaded, None when there was none to load
    state: Any = None                           # its state, as Store.load returns it
    skipped: list[dict[str, str]] = field(default_factory=list)   # [{"checkpoint", "reason"}], newest first
    ignored: list[str] = field(default_factory=list)               # saved before ``since``


def short_reason(name: str, error: CheckpointError) -> str:
    """The part of a load error that says what is wrong (without the checkpoint's name or the fix)."""
    return str(error).removeprefix(f"checkpoint {name}: ").split("; ")[0]


def newest_intact(store: Store, since: Optional[float] = None,
                  check: Optional[Callable[[str, Any], None]] = None, **load_options: Any) -> Choice:
    """Load the most recently saved checkpoint that loads, skipping damaged ones; see the module docstring.

    Args:
        store: the store to resume from.
        since (float | None): ignore checkpoints saved before this Unix time.
        check (callable | None): ``check(name, state)`` after a checkpoint's tree loaded: the rest of
            the loading (a sharded checkpoint's shards, read rank by rank). A CheckpointError it
            raises skips the checkpoint like a damaged tree; a StateMismatch ends the search.
        load_options: passed to :meth:`Store.load`.

    Returns:
        Choice: ``name`` is None when nothing was loaded: no checkpoint (after the ignored ones), or
        every one damaged (then ``skipped`` lists them all; :func:`all_damaged` words the error).
    """
    choice = Choice()
    for name, saved_at in store.newest_first():
        if since is not None and saved_at < since:
            choice.ignored.append(name)
            continue
        if choice.name is not None:
            continue
        try:
            state = store.load(name, **load_options)
            if check is not None:
                check(name, state)
            choice.state, choice.name = state, name
        except StateMismatch:
            raise
        except CheckpointError as exc:
            choice.skipped.append({"checkpoint": name, "reason": short_reason(name, exc)})
    return choice


def all_damaged(directory: str, skipped: list[dict[str, str]]) -> CheckpointError:
    """The one-line error of a resume that found checkpoints but could load none of them."""
    listed = "; ".join(f"{s['checkpoint']}: {s['reason']}" for s in skipped[:_LISTED])
    more = f"; and {len(skipped) - _LISTED} more" if len(skipped) > _LISTED else ""
    return CheckpointError(f"cannot resume from {directory}: no checkpoint there loads ({listed}{more}); "
                           f"`deepdive ckpt verify {directory}` lists the damage; to start from step 0 instead, "
                           "run `deepdive train --fresh` or pass resume=False to dd.setup")
