"""The protocol is defined once in Python; the TypeScript side must match what it generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive import protocol
from deepdive.protocol import InvalidPayload, JobStartParams, from_wire, to_wire

REPO = Path(__file__).resolve().parents[1]


def test_typescript_matches_python_definition():
    committed = (REPO / "extension" / "src" / "protocol.ts").read_text(encoding="utf-8")
    assert committed == protocol.typescript(), (
        "extension/src/protocol.ts drifted from server/protocol.py: run "
        "`python -m deepdive.protocol --write extension/src/protocol.ts`"
    )


def test_every_method_is_in_the_typescript():
    text = protocol.typescript()
    for spec in (*protocol.REQUESTS, *protocol.NOTIFICATIONS):
        assert f"'{spec.method}'" in text


def test_wire_is_camel_case_and_round_trips():
    params = JobStartParams(kind="doctor-deep", options={"seconds": 1}, timeout_s=5.0, memory_limit_mib=100.0)
    wire = to_wire(params)
    assert wire["timeoutS"] == 5.0 and wire["memoryLimitMib"] == 100.0
    assert from_wire(wire, JobStartParams) == params


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({}, "required field missing @ params.kind"),
        ({"kind": 3}, "expected str @ params.kind"),
        ({"kind": "x", "bogus": 1}, "extra fields found (bogus)"),
        ({"kind": "x", "progress": 1}, "expected bool @ params.progress"),
    ],
)
def test_bad_payloads_name_the_field(payload, fragment):
    with pytest.raises(InvalidPayload) as err:
        from_wire(payload, JobStartParams)
    assert fragment in str(err.value)


def test_non_object_params_are_refused():
    with pytest.raises(InvalidPayload, match="params must be an object"):
        from_wire([1, 2], JobStartParams)
