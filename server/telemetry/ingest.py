"""What the hub's ``/ingest`` endpoint takes: one producer message read, checked and made ready to relay.

:func:`read_batch` turns the text of one websocket message into a :class:`Batch` or a one-line
problem (the ``message`` of the ``error`` answer); the hub (:mod:`deepdive.telemetry.hub`) then
deduplicates it by ``seq``, counts it, stores it and fans it out. The message shape is
:class:`deepdive.protocol.IngestBatch`, as :mod:`deepdive.engine.reporter` sends it.

The parse is one pass that also keeps where each top-level value lies (:class:`SpanParser`), so
that the hub relays the ``samples`` and ``events`` arrays as the producer wrote them instead of
encoding them again, whenever nothing in them had to change.
"""

from __future__ import annotations

import json
import re
import time
from json.decoder import scanstring as _scanstring
from typing import Any, Optional, Union

import attrs

from deepdive.protocol import HUB_SCHEMA_VERSION, IngestBatch
from deepdive.protocol.hub import message_type
from deepdive.telemetry.limits import TOO_DEEP, TooDeep, bound

MAX_RUN_ID_CHARS = 512
INGEST = message_type(IngestBatch)

_WHITESPACE = re.compile(r"[ \t\n\r]*")


class SpanParser:
    """A JSON parser that reads ``NaN``/``Infinity`` literals as strings and keeps, for an object,
    the span of each top-level value in the text."""

    def __init__(self) -> None:
        self._saw_constant = False
        self._decoder = json.JSONDecoder(parse_constant=self._constant)

    def parse(self, text: str) -> tuple[Any, dict[str, tuple[int, int]], bool]:
        """Parse a message in one pass, keeping where each top-level value of an object lies.

        Returns:
            tuple[Any, dict[str, tuple[int, int]], bool]: the value, the spans of the object's
            values by key (empty for anything but an object), and whether a ``NaN``/``Infinity``
            literal was read (it is kept as the string ``"NaN"``/``"Infinity"``/``"-Infinity"``).

        Raises:
            ValueError: not JSON.
        """
        self._saw_constant = False
        ws = _WHITESPACE.match
        idx = ws(text, 0).end()
        if text[idx:idx + 1] != "{":
            return self._decoder.decode(text), {}, self._saw_constant
        obj: dict[str, Any] = {}
        spans: dict[str, tuple[int, int]] = {}
        scan = self._decoder.scan_once
        try:
            idx = ws(text, idx + 1).end()
            if text[idx] != "}":
                while True:
                    if text[idx] != '"':
                        raise ValueError(f"expecting a property name in double quotes at char {idx}")
                    key, idx = _scanstring(text, idx + 1, True)
                    idx = ws(text, idx).end()
                    if text[idx] != ":":
                        raise ValueError(f"expecting ':' delimiter at char {idx}")
                    idx = ws(text, idx + 1).end()
                    try:
                        value, end = scan(text, idx)
                    except StopIteration as exc:
                        raise ValueError(f"expecting a value at char {exc.value}") from None
                    obj[key] = value
                    spans[key] = (idx, end)
                    idx = ws(text, end).end()
                    if text[idx] == "}":
                        break
                    if text[idx] != ",":
                        raise ValueError(f"expecting ',' delimiter at char {idx}")
                    idx = ws(text, idx + 1).end()
            if ws(text, idx + 1).end() != len(text):
                raise ValueError(f"extra data at char {idx + 1}")
        except IndexError:
            raise ValueError("the message ends in the middle of the object") from None
        return obj, spans, self._saw_constant

    def _constant(self, name: str) -> str:
        self._saw_constant = True
        return name


@attrs.define
class Batch:
    """One accepted ``/ingest`` message, checked; samples and events without ``t`` have ``received``.

    Attributes:
        message (dict): the parsed message, long strings cut (what ``on_batch`` gets).
        run (str), rank (int), seq (int | None): the producer's identity and sequence number.
        samples (list[dict]), events (list[dict]): the entries, each with its ``t``.
        dropped (int), dropped_events (int): what the producer reported dropping (0 when absent or bad).
        raw_parts (dict[str, str]): the JSON text of ``samples``/``events`` where it can be relayed as sent.
        truncated (int): strings cut to ``max_string_chars``.
        nbytes (int): the length of the message's JSON text after the cuts.
        received (float): ``time.time()`` when it was read.
    """

    message: dict
    run: str
    rank: int
    seq: Any
    samples: list
    events: list
    dropped: int
    dropped_events: int
    raw_parts: dict[str, str]
    truncated: int
    nbytes: int
    received: float


def read_batch(raw: Union[str, bytes], parser: SpanParser, max_depth: int,
               max_string_chars: int) -> Union[Batch, str]:
    """Read one ``/ingest`` message: the :class:`Batch`, or the problem in one line."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        message, spans, saw_constant = parser.parse(text)
    except RecursionError:  # json's scanner gives up on deep nesting: malformed, like the rest
        return TOO_DEEP.format(depth=max_depth)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON ({exc}): send one JSON object per message, as deepdive.engine.reporter does"
    if not isinstance(message, dict):
        return f"expected a JSON object, got {type(message).__name__}"
    try:
        truncated, removed = bound(message, max_depth, max_string_chars)
    except TooDeep as exc:
        return str(exc)
    problem = _check_header(message)
    if problem is not None:
        return problem
    samples, events = message.get("samples", []), message.get("events", [])
    if not isinstance(samples, list) or not isinstance(events, list):
        return "samples and events must be lists of objects"
    now = time.time()
    raw_parts: dict[str, str] = {}
    for name, entries in (("samples", samples), ("events", events)):
        changed = False
        for entry in entries:
            if type(entry) is not dict:
                return f"every {name[:-1]} must be a JSON object"
            if "t" not in entry:
                entry["t"] = now
                changed = True
        if not changed and not saw_constant and not truncated and name in spans:
            raw_parts[name] = text[spans[name][0]:spans[name][1]]
    dropped, dropped_events = message.get("dropped", 0), message.get("dropped_events", 0)
    return Batch(message=message, run=message["run"], rank=message["rank"], seq=message.get("seq"),
                 samples=samples, events=events, dropped=dropped if type(dropped) is int and dropped > 0 else 0,
                 dropped_events=dropped_events if type(dropped_events) is int and dropped_events > 0 else 0,
                 raw_parts=raw_parts, truncated=truncated, nbytes=len(text) - removed, received=now)


def _check_header(message: dict) -> Optional[str]:
    """The problem with a message's ``type``, ``v``, ``run``, ``rank`` or ``seq``, or None."""
    if message.get("type") != INGEST:
        return f"unknown message type {message.get('type')!r}: /ingest takes type \"{INGEST}\""
    version = message.get("v", HUB_SCHEMA_VERSION)
    if version != HUB_SCHEMA_VERSION:
        return (f"schema version {version!r} is not supported (this hub speaks v {HUB_SCHEMA_VERSION}): use the "
                "deepdive engine of the same release as the daemon")
    run, rank, seq = message.get("run"), message.get("rank"), message.get("seq")
    if not isinstance(run, str) or not run or len(run) > MAX_RUN_ID_CHARS:
        return f"run must be a non-empty string of at most {MAX_RUN_ID_CHARS} characters"
    if type(rank) is not int:
        return "rank must be an integer"
    if seq is not None and type(seq) is not int:
        return "seq must be an integer"
    return None
