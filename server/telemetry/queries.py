"""Questions a ``/stream`` subscriber asks the hub about stored history, and the replies it gets.

A subscriber may ask for stored history on its connection (when the hub was given a ``history``
function): it sends ``{"type": "query", "id": int, "what": "runs"}`` for the past runs with their
outcome, or ``{"type": "query", "id": int, "what": "run", "run": str, "fields": [str, ...]}`` for
one run's stored samples (rank 0, at most ``max_points`` rows), and gets
``{"type": "reply", "id": int, "ok": true, ...}`` (``runs`` or ``run`` and ``rows``) or
``{"type": "reply", "id": int, "ok": false, "error": str}`` (also for anything that is not a query:
not JSON, nested too deep, another type). The hub (:mod:`deepdive.telemetry.hub`) answers the
queries of one connection in order, one at a time; replies are never dropped. The messages are
:class:`deepdive.protocol.HubQuery` and :class:`deepdive.protocol.HubReply`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Union

import attrs

from deepdive.protocol import HubQuery, HubReply, InvalidPayload, from_wire, to_wire
from deepdive.protocol.hub import message_type
from deepdive.telemetry.limits import TOO_DEEP, TooDeep, check_depth
from deepdive.telemetry.outgoing import encode, encode_lenient

log = logging.getLogger("deepdive.telemetry.hub")

QUERY = message_type(HubQuery)


def read(raw: Union[str, bytes], max_depth: int) -> Union[dict, str]:
    """The query a subscriber sent, or the refusal to send back (the reply's text) when it is none."""
    try:
        message = json.loads(raw)
        check_depth(message, max_depth)
    except (RecursionError, TooDeep):  # json's scanner gives up on deep nesting: malformed, like the rest
        return refusal(None, f"{TOO_DEEP.format(depth=max_depth)}: send a query object")
    except ValueError:
        return refusal(None, "not JSON: send a query object")
    ident = message.get("id") if isinstance(message, dict) else None
    if not isinstance(message, dict) or message.get("type") != QUERY:
        return refusal(ident, f'subscribers may only send {{"type": "{QUERY}", ...}}')
    return message


async def answer(history: Callable[[dict], dict], message: dict) -> str:
    """The reply's text to a query: ``history``'s answer (run in a worker thread: rows may be many),
    or a refusal with its ``ValueError``/``KeyError`` message, or that the query failed."""
    ident = message.get("id")
    try:
        reply = await asyncio.to_thread(_answer, history, message, ident)
    except (ValueError, KeyError) as exc:
        return refusal(ident, str(exc).strip('"'))
    except Exception:
        log.exception("telemetry hub: history query %r failed", message)
        return refusal(ident, "the query failed; see the daemon log")
    return encode_lenient(to_wire(reply, omit_absent=True))


def _answer(history: Callable[[dict], dict], message: dict, ident: Any) -> HubReply:
    """The history function's answer to ``message`` as a reply."""
    answer = history(message)
    try:
        reply = from_wire({**answer, "id": None, "ok": True}, HubReply, what="reply")
    except InvalidPayload as exc:  # the history function and the protocol disagree: the daemon's bug
        raise RuntimeError(str(exc)) from None
    return attrs.evolve(reply, id=ident)  # whatever the query's id was, the reply carries it back


def refusal(ident: Any, error: str) -> str:
    """A reply that says why a subscriber's message got no answer."""
    return encode(to_wire(HubReply(id=ident, ok=False, error=error), omit_absent=True))
