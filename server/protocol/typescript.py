"""The TypeScript side of the protocol, generated: ``extension/src/protocol.ts``.

``python -m deepdive.protocol --write extension/src/protocol.ts`` (``make protocol``) writes it; a
test fails when the committed file differs from what this module generates.
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import sys
import textwrap
import types
import typing
from typing import Any, Literal, Optional, Union

import attrs

from deepdive.protocol.base import TS_TYPE, VOCABULARY_TYPES, camel, wire_name
from deepdive.protocol.hub import INGEST_MESSAGES, INGEST_REPLIES, STREAM_MESSAGES, STREAM_QUERIES
from deepdive.protocol.hub_events import HUB_EVENTS
from deepdive.protocol.job_options import JOB_OPTIONS, RANGE
from deepdive.protocol.methods import NOTIFICATIONS, PROTOCOL_VERSION, REQUESTS
from deepdive.protocol.wire import attrs_classes
from deepdive.vocabulary import VOCABULARIES


def _literal(args: tuple[Any, ...]) -> str:
    """A Literal in TypeScript: a vocabulary's type by its name, else the union of its values."""
    for alias, name in VOCABULARY_TYPES.items():
        if args == VOCABULARIES[name]:
            return alias
    return " | ".join(f"'{a}'" for a in args)


def _ts_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return "unknown"
    if tp is type(None):
        return "null"
    if tp is str:
        return "string"
    if tp in (int, float):
        return "number"
    if tp is bool:
        return "boolean"
    if attrs.has(tp):
        return tp.__name__
    if origin is Literal:
        return _literal(args)
    if origin in (Union, types.UnionType):
        parts = [_ts_type(a) for a in args if a is not type(None)]
        return " | ".join(parts)
    if origin is list:
        inner = _ts_type(args[0])
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if origin is dict:
        return f"Record<string, {_ts_type(args[1])}>"
    raise TypeError(f"no TypeScript mapping for {tp!r}")


def _always_sent(field: attrs.Attribute) -> bool:
    """A field without a default, or a one-value Literal (a message's ``type`` or an event's ``kind``)."""
    one_value = typing.get_origin(field.type) is Literal and len(typing.get_args(field.type)) == 1
    return field.default is attrs.NOTHING or one_value


def _nullable(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


@functools.cache
def _declared_docs(klass: type) -> dict[str, Optional[str]]:
    """The fields ``klass`` itself declares, each with the string under its declaration (or None)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, Optional[str]] = {}
    for node, nxt in zip(body, [*body[1:], None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = nxt.value.value if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) else None
            docs[node.target.id] = " ".join(doc.split()) if isinstance(doc, str) else None
    return docs


def _field_doc(cls: type, name: str) -> Optional[str]:
    """The string under a field's declaration, in ``cls`` or the class it inherits the field from."""
    for klass in cls.__mro__:
        docs = _declared_docs(klass) if attrs.has(klass) else {}
        if name in docs:
            return docs[name]
    return None


def _vocabularies() -> list[str]:
    out = [
        "/** Lists both sides show (server/vocabulary.py). */",
        "export const Vocabularies = {",
        *[f"  {name}: [{', '.join(repr(v) for v in values)}] as const," for name, values in VOCABULARIES.items()],
        "};",
        "",
    ]
    for alias, name in VOCABULARY_TYPES.items():
        out.append(f"export type {alias} = (typeof Vocabularies.{name})[number];")
    out.append("")
    return out


def _interface(cls: type) -> list[str]:
    out = []
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):  # attrs' generated doc is no doc
        out.append(f"/** {' '.join(cls.__doc__.split())} */")
    out.append(f"export interface {cls.__name__} {{")
    for field in attrs.fields(cls):
        doc = _field_doc(cls, field.name)
        if doc:
            out.append(f"  /** {doc} */")
        ts = field.metadata.get(TS_TYPE) or _ts_type(field.type)
        if _nullable(field.type):
            ts += " | null"
        opt = "" if _always_sent(field) else "?"
        out.append(f"  {wire_name(cls, field)}{opt}: {ts};")
    out.append("}")
    out.append("")
    return out


def _methods() -> list[str]:
    out = ["/** Custom requests: method name, params and result types. */", "export const Requests = {"]
    for req in REQUESTS:
        key = _key(req.method)
        out += [f"  /** {req.doc} */", f"  {key}: '{req.method}',"]
    out += ["} as const;", "", "export interface RequestTypes {"]
    for req in REQUESTS:
        params = req.params.__name__ if req.params else "Record<string, never>"
        out.append(f"  '{req.method}': {{ params: {params}; result: {req.result.__name__} }};")
    out += ["}", "", "/** Custom notifications from the daemon. */", "export const Notifications = {"]
    for note in NOTIFICATIONS:
        out += [f"  /** {note.doc} */", f"  {_key(note.method)}: '{note.method}',"]
    out += ["} as const;", "", "export interface NotificationTypes {"]
    out += [f"  '{note.method}': {note.params.__name__};" for note in NOTIFICATIONS]
    out += ["}", ""]
    return out


def _key(method: str) -> str:
    """The name a method has in `Requests` / `Notifications`: `deepdive/jobs/start` -> `jobsStart`."""
    return camel(method.removeprefix("deepdive/").replace("/", "_"))


def _job_options() -> list[str]:
    out = ["/** The options of each job kind (`deepdive/jobs/start`; the daemon checks them). */",
           "export interface JobOptionTypes {"]
    out += [f"  '{kind}': {cls.__name__};" for kind, cls in JOB_OPTIONS.items()]
    out += ["}", "", "export type JobOptions = JobOptionTypes[keyof JobOptionTypes];", "",
            "/** `deepdive/jobs/start`'s params for a job of kind K, its options typed. */",
            "export type JobStartOf<K extends keyof JobOptionTypes> = Omit<JobStartParams, 'kind' | 'options'> & "
            "{ kind: K; options: JobOptionTypes[K] };", "",
            "/** The numbers each option takes: [low, high] (both included unless the option's doc says otherwise). */",
            "export const JobOptionRanges = {"]
    for kind, cls in JOB_OPTIONS.items():
        ranges = [(wire_name(cls, f), f.metadata[RANGE]) for f in attrs.fields(cls) if RANGE in f.metadata]
        if ranges:
            inner = ", ".join(f"{key}: [{low:g}, {high:g}]" for key, (low, high, _) in ranges)
            out.append(f"  '{kind}': {{ {inner} }},")
    out += ["} as const;", ""]
    return out


def _union(name: str, doc: str, classes: tuple[type, ...]) -> list[str]:
    return [f"/** {doc} */", f"export type {name} = {' | '.join(c.__name__ for c in classes)};", ""]


def _hub() -> list[str]:
    return [
        *_union("IngestMessage", "What a producer sends to the hub's /ingest.", INGEST_MESSAGES),
        *_union("IngestReply", "What the hub answers on /ingest.", INGEST_REPLIES),
        *_union("StreamMessage", "What the hub sends a dashboard on /stream.", STREAM_MESSAGES),
        *_union("StreamQuery", "What a dashboard may send on /stream.", STREAM_QUERIES),
        *_union("HubEvent", "The events of a samples message that the pages read (by `kind`).", HUB_EVENTS),
        "/** A message as it arrives: the protocol's keys, each value still to be checked. */",
        "export type Unchecked<T> = { [K in keyof T]?: unknown };",
        "",
    ]


def typescript() -> str:
    """The TypeScript declarations of every payload, method, vocabulary and hub message."""
    out = [
        "// Generated from server/protocol/ by `make protocol` "
        "(python -m deepdive.protocol --write extension/src/protocol.ts).",
        "// Do not edit: change the Python definition and regenerate (a test checks they agree).",
        "",
        f"export const PROTOCOL_VERSION = {PROTOCOL_VERSION};",
        "",
        *_vocabularies(),
    ]
    for cls in attrs_classes():
        out += _interface(cls)
    out += _methods() + _job_options() + _hub()
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepdive.protocol")
    parser.add_argument("--typescript", action="store_true", help="print the TypeScript declarations")
    parser.add_argument("--write", metavar="PATH", help="write the TypeScript declarations to PATH")
    args = parser.parse_args(argv)
    text = typescript()
    if args.write:
        from deepdive.fsutil import atomic_write_text

        atomic_write_text(args.write, text)
    else:
        sys.stdout.write(text)
    return 0
