"""Codegen's types to and from the wire types of ``deepdive/generate``.

The pipeline speaks :mod:`deepdive.codegen.generation`; the editor speaks :mod:`deepdive.protocol`.
The two sets of classes have the same field names, and these functions copy one into the other
field by field, so that codegen never imports the protocol and the protocol never reaches into
codegen. A field added to one side and not the other fails tests/daemon/test_generate_wire.py.
"""

from __future__ import annotations

from typing import Any

import attrs

from deepdive import protocol
from deepdive.codegen import generation

__all__ = ["params_from_wire", "check_to_wire", "property_to_wire", "partial_to_wire", "result_to_wire"]


def _fields(obj: Any) -> dict[str, Any]:
    return attrs.asdict(obj, recurse=False)


def params_from_wire(params: protocol.GenerateParams) -> generation.GenerateParams:
    """The request the pipeline runs; the progress tokens stay with the daemon, which reports on them."""
    return generation.GenerateParams(**{f.name: getattr(params, f.name) for f in attrs.fields(generation.GenerateParams)})


def check_to_wire(check: generation.GenerateCheck) -> protocol.GenerateCheck:
    return protocol.GenerateCheck(**_fields(check))


def property_to_wire(prop: generation.PropertyCheck) -> protocol.PropertyCheck:
    return protocol.PropertyCheck(**_fields(prop))


def partial_to_wire(partial: generation.GeneratePartial) -> protocol.GeneratePartial:
    fields = _fields(partial)
    fields["check"] = check_to_wire(partial.check) if partial.check is not None else None
    return protocol.GeneratePartial(**fields)


def result_to_wire(result: generation.GenerateResult) -> protocol.GenerateResult:
    fields = _fields(result)
    fields["checks"] = [check_to_wire(c) for c in result.checks]
    fields["properties"] = [property_to_wire(p) for p in result.properties]
    return protocol.GenerateResult(**fields)
