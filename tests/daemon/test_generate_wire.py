"""The daemon's adapter between codegen's types and the wire's: every field crosses, in both directions.

Codegen speaks deepdive.codegen.generation, the editor deepdive.protocol; a field added to one and
not the other would be dropped on the way (or fail the request), so these tests fill every field and
read it back from the wire form the editor receives.
"""

from __future__ import annotations

import typing

import attrs

from deepdive import protocol
from deepdive.codegen import generation
from deepdive.daemon.generate_wire import params_from_wire, partial_to_wire, result_to_wire

TOKENS = {"work_done_token", "partial_result_token"}  # the daemon reports on them; codegen never sees them


def names(cls: type) -> set[str]:
    return {f.name for f in attrs.fields(cls)}


def test_both_sides_have_the_same_fields() -> None:
    assert names(protocol.GenerateParams) - TOKENS == names(generation.GenerateParams)
    for ours, wire in ((generation.GenerateCheck, protocol.GenerateCheck), (generation.PropertyCheck, protocol.PropertyCheck),
                       (generation.GeneratePartial, protocol.GeneratePartial), (generation.GenerateResult, protocol.GenerateResult)):
        assert names(ours) == names(wire), ours.__name__


def test_a_request_from_the_wire_keeps_every_field_but_the_tokens() -> None:
    wire = protocol.from_wire({"prompt": "a GRU forecaster", "framework": "tensorflow", "backend": "openai-compatible",
                               "modelPath": "/m.gguf", "endpoint": "http://127.0.0.1:1", "model": "coder",
                               "allowRemote": True, "verify": False, "allowGpu": True, "workDoneToken": 3,
                               "partialResultToken": "p"}, protocol.GenerateParams)
    request = params_from_wire(wire)
    assert isinstance(request, generation.GenerateParams)
    assert attrs.asdict(request) == {k: v for k, v in attrs.asdict(wire).items() if k not in TOKENS}


def test_a_result_with_every_field_set_reaches_the_editor_whole() -> None:
    statuses = typing.get_args(generation.PropertyStatus)
    result = generation.GenerateResult(
        code="print(1)\n", backend="llamacpp", framework="torch", intent={"task": "regression"}, verified=False,
        checks=[generation.GenerateCheck(name="smoke", ok=False, detail="exit code 1", seconds=0.5)],
        rounds=2, seconds=3.25, filename="regression_mlp.py", message="verification failed",
        properties=[generation.PropertyCheck(name="outputs", expected=[1, 2], status=s, detail="seen", text="2 outputs",
                                             label="outputs 2") for s in statuses],
        understood_as={"stated": []}, not_understood=["frobnicate"], gaps=["no dropout"])
    wire = result_to_wire(result)
    assert isinstance(wire, protocol.GenerateResult)
    back = protocol.from_wire(protocol.to_wire(wire), protocol.GenerateResult)
    assert attrs.asdict(back) == attrs.asdict(result)
    assert [p.status for p in back.properties] == list(statuses)


def test_every_kind_of_partial_reaches_the_editor() -> None:
    check = generation.GenerateCheck(name="syntax", ok=True, seconds=0.01)
    for kind in typing.get_args(generation.PartialKind):
        partial = generation.GeneratePartial(kind=kind, text="verifying" if kind != "check" else None,
                                             check=check if kind == "check" else None)
        back = protocol.from_wire(protocol.to_wire(partial_to_wire(partial)), protocol.GeneratePartial)
        assert attrs.asdict(back) == attrs.asdict(partial)
