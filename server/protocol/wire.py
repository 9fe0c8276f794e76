"""Conversion between the protocol's attrs classes and JSON: strict on the way in, named keys on the way out.

Every class reachable from the methods, the job options, the hub messages and the hub events is
registered with :data:`CONVERTER`: its keys are its wire names (``deepdive.protocol.base.wire_name``),
unknown keys are refused, a number where a string belongs is an error (no silent coercion), and the
str fields of a request's params are bounded (``MAX_CHARS``).
"""

from __future__ import annotations

import typing
from typing import Any, Optional, Union

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from deepdive.protocol.base import MAX_CHARS, MAX_NAME_CHARS, wire_name
from deepdive.protocol.hub import INGEST_MESSAGES, INGEST_REPLIES, STREAM_MESSAGES, STREAM_QUERIES
from deepdive.protocol.hub_events import HUB_EVENTS
from deepdive.protocol.job_options import JOB_OPTIONS
from deepdive.protocol.methods import NOTIFICATIONS, PROGRESS_VALUES, REQUESTS


class InvalidPayload(ValueError):
    """Params that do not match their declared shape; the message says which field and why."""


class TooLong(ValueError):
    """A string in a request's params over its limit; the message gives its length and the limit."""


def roots() -> list[type]:
    """The classes the protocol declares at its top: what crosses a process boundary, in generation order."""
    out: list[Optional[type]] = []
    for req in REQUESTS:
        out += [req.params, req.result]
    out += [note.params for note in NOTIFICATIONS]
    out += [*PROGRESS_VALUES, *JOB_OPTIONS.values(), *INGEST_MESSAGES, *INGEST_REPLIES, *STREAM_MESSAGES,
            *STREAM_QUERIES, *HUB_EVENTS]
    return [cls for cls in out if cls is not None]


def attrs_classes() -> list[type]:
    """Every payload class, leaves before the classes that contain them."""
    seen: dict[type, None] = {}
    visiting: set[type] = set()

    def visit(tp: Any) -> None:
        if attrs.has(tp):
            if tp in seen or tp in visiting:
                return
            visiting.add(tp)
            attrs.resolve_types(tp)
            for field in attrs.fields(tp):
                visit(field.type)
            seen[tp] = None
        for arg in typing.get_args(tp):
            visit(arg)

    for cls in roots():
        visit(cls)
    return list(seen)


def _strict(tp: type, accepts: tuple[type, ...]):
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and tp is not bool:
            raise TypeError(f"expected {tp.__name__}, got a boolean")
        if not isinstance(value, accepts):
            raise TypeError(f"expected {tp.__name__}, got {type(value).__name__}")
        return tp(value)

    return structure


def _progress_token(value: Any, _: Any) -> Any:
    """LSP's ProgressToken: an integer or a string."""
    if value is None or (isinstance(value, (int, str)) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected a progress token (integer or string), got {type(value).__name__}")


def _bounded(limit: int):
    """A str field of a request's params: a string (or null where optional) of at most ``limit`` characters."""
    strict = _strict(str, (str,))

    def structure(value: Any, tp: Any) -> Any:
        if value is None and tp is not str:
            return None
        text = strict(value, str)
        if len(text) > limit:
            raise TooLong(f"too long: {len(text):,} characters, the limit is {limit:,} characters")
        return text

    return structure


def _string_limits(cls: type) -> dict[str, Any]:
    """Structure overrides that bound each str and Optional[str] field of a params class."""
    limits = {}
    for field in attrs.fields(cls):
        if field.type is str or field.type == Optional[str]:
            limit = field.metadata.get(MAX_CHARS, MAX_NAME_CHARS)
            limits[field.name] = override(rename=wire_name(cls, field), struct_hook=_bounded(limit))
    return limits


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    # JSON types only, no silent coercion: a number where a string belongs is an error.
    conv.register_structure_hook(str, _strict(str, (str,)))
    conv.register_structure_hook(int, _strict(int, (int,)))
    conv.register_structure_hook(float, _strict(float, (int, float)))
    conv.register_structure_hook(bool, _strict(bool, (bool,)))
    conv.register_structure_hook(Optional[Union[int, str]], _progress_token)
    params_classes = {req.params for req in REQUESTS if req.params is not None}
    classes = set(attrs_classes())

    def renames(cls: type) -> dict[str, Any]:
        return {f.name: override(rename=wire_name(cls, f)) for f in attrs.fields(cls)}

    def structure(cls: type) -> Any:
        inbound = {**renames(cls), **_string_limits(cls)} if cls in params_classes else renames(cls)
        return make_dict_structure_fn(cls, conv, _cattrs_forbid_extra_keys=True, **inbound)

    # Each class's functions are generated when it is first converted (and kept): generating all of them
    # up front would add most of a second to the daemon's start.
    conv.register_unstructure_hook_factory(classes.__contains__, lambda cls: make_dict_unstructure_fn(
        cls, conv, **renames(cls)))
    conv.register_structure_hook_factory(classes.__contains__, structure)
    return conv


CONVERTER = _make_converter()


def to_wire(obj: Any, *, omit_absent: bool = False) -> Any:
    """An attrs payload as JSON-ready data under its wire keys.

    ``omit_absent`` leaves out the top-level fields that are null where their default is null (the
    hub's replies carry only what they say).
    """
    data = CONVERTER.unstructure(obj)
    if omit_absent:
        absent = {wire_name(type(obj), f) for f in attrs.fields(type(obj)) if f.default is None}
        data = {key: value for key, value in data.items() if value is not None or key not in absent}
    return data


def _describe(exc: BaseException, tp: Any) -> str:
    """cattrs' wording for a field's error, except a limit's own message, which names the limit."""
    return str(exc) if isinstance(exc, TooLong) else cattrs.v.format_exception(exc, tp)


def from_wire(data: Any, cls: type[Any], *, what: str = "params") -> Any:
    """Validate wire data into ``cls``; raises :class:`InvalidPayload` naming the bad field.

    ``what`` names the data in the message's paths (``params.kind``; a hub message: ``message.run``).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPayload(f"{what} must be an object ({cls.__name__}), got {type(data).__name__}")
    try:
        return CONVERTER.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path=what, format_exception=_describe)
        raise InvalidPayload(f"invalid {cls.__name__}: " + "; ".join(problems)) from None
