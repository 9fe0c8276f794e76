"""The protocol is defined once in Python (server/protocol/); the TypeScript side must match what it generates:
the LSP methods, the vocabularies, the job options and the hub messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepdive import protocol
from deepdive.protocol import InvalidPayload, JobStartParams, from_wire, to_wire

REPO = Path(__file__).resolve().parents[1]


def test_typescript_matches_python_definition():
    committed = (REPO / "extension" / "src" / "protocol.ts").read_text(encoding="utf-8")
    assert committed == protocol.typescript(), (
        "extension/src/protocol.ts drifted from server/protocol/: run `make protocol` "
        "(python -m deepdive.protocol --write extension/src/protocol.ts)"
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


# -- everything generated: vocabularies, job options, hub messages (issue #25) ----------------------------


def test_python_m_deepdive_protocol_writes_the_committed_file(tmp_path: Path):
    """`make protocol` runs this command; what it writes is what the extension compiles against."""
    import subprocess
    import sys

    out = tmp_path / "protocol.ts"
    done = subprocess.run([sys.executable, "-m", "deepdive.protocol", "--write", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8") == (REPO / "extension" / "src" / "protocol.ts").read_text(encoding="utf-8")


def test_every_vocabulary_option_and_hub_message_is_in_the_typescript():
    text = protocol.typescript()
    for name, values in protocol.VOCABULARIES.items():
        assert f"  {name}: [{', '.join(repr(v) for v in values)}] as const," in text
    for kind, cls in protocol.JOB_OPTIONS.items():
        assert f"export interface {cls.__name__} {{" in text and f"  '{kind}': {cls.__name__};" in text
    from deepdive.protocol.hub import INGEST_MESSAGES, INGEST_REPLIES, STREAM_MESSAGES, STREAM_QUERIES

    for cls in (*INGEST_MESSAGES, *INGEST_REPLIES, *STREAM_MESSAGES, *STREAM_QUERIES, *protocol.HUB_EVENTS):
        assert f"export interface {cls.__name__} {{" in text
    assert "export type StreamMessage = StreamSnapshot | StreamSamples | MachineMessage | VerdictMessage | HubReply;" in text


def test_typescript_keys_are_the_wire_keys():
    """LSP payloads in camelCase, hub messages and job options as the engine and the job store name them."""
    text = protocol.typescript()
    assert "  timeoutS?: number | null;" in text  # JobStartParams
    assert "  producer_dropped: number;" in text  # StreamSamples
    assert "  grad_compression?: GradCompression | null;" in text and "  distillEpochs?: number | null;" in text
    assert "  type: 'samples';" in text  # a message's type is always sent, so TypeScript can narrow on it


def test_a_field_of_a_vocabulary_takes_its_values_and_nothing_else():
    assert from_wire({"prompt": "a cnn", "backend": "llamacpp"}, protocol.GenerateParams).backend == "llamacpp"
    with pytest.raises(InvalidPayload, match=r"@ params\.backend"):
        from_wire({"prompt": "a cnn", "backend": "gpt"}, protocol.GenerateParams)


# -- job options ---------------------------------------------------------------------------------------------


def test_every_job_kind_has_its_options_class():
    from deepdive.jobs.kinds import KINDS

    assert set(KINDS) == set(protocol.JOB_OPTIONS)


def test_options_become_the_kinds_class_null_is_the_default_and_numbers_are_whole_where_they_must_be():
    o = protocol.parse_options("compress", {"model": "m.pt", "eval": "e.py", "prune": None, "layers": 4.0,
                                            "distillEpochs": 5, "quantize": "int8-static", "distill": True})
    assert o == protocol.CompressOptions(model="m.pt", eval="e.py", layers=4, distill_epochs=5, quantize="int8-static",
                                         distill=True)
    assert isinstance(o.layers, int)
    t = protocol.parse_options("train", {"path": "t.py", "nproc": None, "fresh": None})
    assert (t.nproc, t.fresh, t.args, t.nnodes) == (1, False, [], "1")


@pytest.mark.parametrize("kind, options, message", [
    ("compress", {"eval": "e.py"}, "option 'model' must name the model file"),
    ("compress", {"model": "m.pt", "eval": "e.py", "distill_epochs": 3},
     r"unknown option\(s\) for compress: distill_epochs \(allowed: .*distillEpochs"),
    ("tune", {"path": "t.py", "sampler": "bogus"}, "option 'sampler' must be one of tpe, gp, cmaes, random, got 'bogus'"),
    ("tune", {"path": "t.py", "seed": 2**32}, "option 'seed' must be a whole number from 0 to 4294967295, got 4294967296"),
    ("tune", {"path": "t.py", "timeout": float("nan")}, "option 'timeout' must be a number from 0.001 to 1000000000, got nan"),
    ("train", {"path": "t.py", "args": ["--x", 1]}, r"option 'args' must be a list of strings, got \['--x', 1\]"),
    ("train", {"path": "t.py", "precision": "fp8"}, "option 'precision' must be one of auto, fp32, bf16, fp16, got 'fp8'"),
    ("script", {"path": "   "}, "option 'path' must name a Python file, got '   '"),
    ("doctor-deep", [1], "the options of a doctor-deep job must be an object, got list"),
])
def test_a_wrong_option_is_refused_in_one_line_that_names_it(kind: str, options, message: str):
    with pytest.raises(protocol.InvalidOptions, match=message) as info:
        protocol.parse_options(kind, options)
    assert "\n" not in str(info.value)


async def test_the_daemon_refuses_a_wrong_option_when_the_job_starts(daemon):
    from pygls.exceptions import JsonRpcException

    with pytest.raises(JsonRpcException, match="option 'device' must be one of auto, cpu, cuda, got 'tpu'"):
        await daemon.request(protocol.JOBS_START, JobStartParams(kind="doctor-deep", options={"device": "tpu"}))
