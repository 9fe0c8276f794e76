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


# -- size limits on user text (issue #18: a 40 MB prompt stalled the daemon) -----------------------


def test_a_prompt_over_the_limit_is_refused_naming_the_field_and_the_limit():
    at_limit = from_wire({"prompt": "x" * protocol.MAX_PROMPT_CHARS}, protocol.GenerateParams)
    assert len(at_limit.prompt) == protocol.MAX_PROMPT_CHARS
    with pytest.raises(InvalidPayload) as info:
        from_wire({"prompt": "x" * (protocol.MAX_PROMPT_CHARS + 1)}, protocol.GenerateParams)
    message = str(info.value)
    assert message.endswith("@ params.prompt") and f"limit is {protocol.MAX_PROMPT_CHARS:,}" in message
    assert "\n" not in message


def test_a_document_of_a_few_megabytes_is_accepted_and_a_larger_one_refused():
    text = "x = 1\n" * 300_000  # 1.8 MB: a big script, still fine
    assert from_wire({"path": "t.py", "params": {}, "text": text}, protocol.TuneApplyParams).text == text
    assert from_wire({"path": "t.py", "params": {}, "text": None}, protocol.TuneApplyParams).text is None
    with pytest.raises(InvalidPayload, match=r"limit is 2,097,152 characters @ params\.text"):
        from_wire({"path": "t.py", "params": {}, "text": "x" * (protocol.MAX_DOCUMENT_CHARS + 1)},
                  protocol.TuneApplyParams)


def test_names_and_paths_in_params_are_bounded_too():
    long = "p" * (protocol.MAX_NAME_CHARS + 1)
    with pytest.raises(InvalidPayload, match=r"too long.* @ params\.path"):
        from_wire({"path": long, "params": {}}, protocol.TuneApplyParams)
    with pytest.raises(InvalidPayload, match=r"too long.* @ params\.title"):
        from_wire({"kind": "script", "title": long}, JobStartParams)
    with pytest.raises(InvalidPayload, match=r"expected str @ params\.kind"):  # the type check still comes first
        from_wire({"kind": 3}, JobStartParams)


def test_results_are_not_bounded():
    """The limits guard what clients send; a long result (a generated program, a log) still converts."""
    code = "x = 1\n" * 20_000
    result = protocol.GenerateResult(code=code, backend="builtin", framework="torch", intent={}, verified=True)
    assert from_wire(to_wire(result), protocol.GenerateResult).code == code
