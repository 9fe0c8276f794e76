"""The generation pipeline end to end: the real parser, builtin generator and verifier; model backends
through a real streaming chat-completions server on 127.0.0.1 (the repair loop of the whole-program mode, frame=False; frame mode: test_frames.py)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time

import pytest

from deepdive.codegen import builtin
from deepdive.codegen.backends import BackendError
from deepdive.codegen.generation import GenerateCheck, GenerateParams, GeneratePartial, PropertyCheck
from deepdive.codegen.parse import parse_intent
from deepdive.codegen.pipeline import (
    BUILTIN_PHASE,
    Cancelled,
    CodeStream,
    extract_code,
    generate,
    repair_message,
    system_prompt,
)
from deepdive.codegen.understand import read_request

PROMPT = "a 2-layer MLP classifier with 4 classes"
MARK = "deliberate failure 4242"


class ChatServer:
    """A streaming chat-completions server (SSE over chunked HTTP/1.1) on 127.0.0.1 in a thread."""

    def __init__(self, reply, *, chunk: int = 40, delay_s: float = 0.0) -> None:  # noqa: ANN001
        self.reply = reply  # body -> answer text
        self.chunk = chunk
        self.delay_s = delay_s
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                text = server.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(0, len(text), server.chunk):
                        delta = {"choices": [{"index": 0, "delta": {"content": text[i : i + server.chunk]}}]}
                        raw = f"data: {json.dumps(delta)}\n\n".encode()
                        self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                        self.wfile.flush()
                        if server.delay_s:
                            time.sleep(server.delay_s)
                    raw = b"data: [DONE]\n\n"
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "ChatServer":
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.httpd.shutdown()
        self.httpd.server_close()


def reference_code(prompt: str = PROMPT) -> str:
    return builtin.generate(parse_intent(prompt)).code


def collect() -> tuple[list[GeneratePartial], object]:
    partials: list[GeneratePartial] = []
    return partials, partials.append


# ------------------------------------------------------------------------------------------------
# builtin
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_builtin_through_the_pipeline_says_what_it_is_and_verifies_every_stated_property() -> None:
    partials, on_partial = collect()
    result = generate(GenerateParams(prompt=PROMPT, backend="builtin"), on_partial=on_partial, cancel=threading.Event())
    assert result.verified, result.message
    assert result.backend == "builtin" and result.framework == "torch" and result.rounds == 0
    assert result.intent["architecture"] == "mlp" and result.intent["num_classes"] == 4
    assert result.filename and result.filename.endswith(".py")
    assert result.message is None
    # Every property the prompt states was checked and met; the reading is in the result.
    stated = result.understood_as["stated"]
    assert stated and [p.name for p in result.properties] == [s["name"] for s in stated]
    assert all(p.status == "met" for p in result.properties), [(p.label, p.status, p.detail) for p in result.properties]
    assert {"name": "outputs", "value": 4} in [{k: s[k] for k in ("name", "value")} for s in stated]
    # The builtin composes the program at once: one phase says so, the text comes in one piece.
    texts = [p.text for p in partials if p.kind == "text"]
    assert texts == [result.code]
    phases = [p.text for p in partials if p.kind == "phase"]
    assert phases == [BUILTIN_PHASE, "verifying"]
    assert "not streamed token by token" in BUILTIN_PHASE
    checks = [p.check for p in partials if p.kind == "check"]
    assert checks and checks == result.checks
    assert all(c.ok for c in result.checks)
    kinds = [p.kind for p in partials]
    assert kinds.index("phase", 1) > max(i for i, k in enumerate(kinds) if k == "text")  # code, then checks
    assert "reset" not in kinds


def test_builtin_without_verification() -> None:
    partials, on_partial = collect()
    result = generate(GenerateParams(prompt=PROMPT, backend="builtin", verify=False), on_partial=on_partial)
    assert not result.verified and result.checks == []
    assert result.message == "verification is off: the program was not run and no stated property was checked"
    assert result.properties and all(p.status == "not_checked" for p in result.properties)
    assert [p.kind for p in partials if p.kind not in ("text",)] == ["phase"]
    assert "def build_model" in result.code and "def example_batch" in result.code


def test_a_prompt_nothing_understands_gets_no_program_and_says_what_a_model_would_add() -> None:
    partials, on_partial = collect()
    result = generate(GenerateParams(prompt="make me a sandwich", backend="builtin"), on_partial=on_partial)
    assert result.code == "" and not result.verified and result.checks == []
    assert result.message.startswith('could not tell what to build from "make me a sandwich"')
    assert "deepdive model pull" in result.message and "\n" not in result.message
    assert not [p for p in partials if p.kind == "text"]


def test_builtin_answers_a_request_it_cannot_build_as_asked_with_what_is_missing_and_no_program() -> None:
    prompt = "a YOLO object detection model for 3 classes of traffic signs"
    partials, on_partial = collect()
    result = generate(GenerateParams(prompt=prompt, backend="builtin"), on_partial=on_partial)
    assert result.code == "" and not result.verified and result.filename is None
    assert result.gaps, "the reading names what the builtin cannot honour"
    assert result.message.startswith("the builtin generator cannot build this as asked: ")
    assert all(gap in result.message for gap in result.gaps)
    assert "deepdive model pull" in result.message and "auto backend" in result.message
    assert result.understood_as["prompt"] == prompt
    assert any(s["name"] == "task" and s["value"] == "object-detection" for s in result.understood_as["stated"])
    assert result.properties and all(p.status == "not_checked" for p in result.properties)
    assert partials == [], "no program streamed, nothing run"


@pytest.mark.slow
def test_cancel_during_verification_is_prompt(monkeypatch) -> None:
    monkeypatch.setenv("DEEPDIVE_SANDBOX_WARM", "0")  # a cold smoke run, still running when the cancel comes
    cancel = threading.Event()
    seen: list[str] = []

    def on_partial(p: GeneratePartial) -> None:
        seen.append(p.kind)
        if p.kind == "phase" and p.text == "verifying":
            threading.Timer(0.3, cancel.set).start()

    start = time.monotonic()
    with pytest.raises(Cancelled):
        generate(GenerateParams(prompt=PROMPT, backend="builtin"), on_partial=on_partial, cancel=cancel)
    assert time.monotonic() - start < 5.0  # a --smoke run of this program alone takes longer here
    assert "phase" in seen


def test_cancel_before_start() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        generate(GenerateParams(prompt=PROMPT), cancel=cancel)


def test_daemon_side_imports_no_torch() -> None:
    code = (
        "import sys, threading\n"
        "from deepdive.codegen.pipeline import generate\n"
        "from deepdive.codegen.generation import GenerateParams\n"
        "r = generate(GenerateParams(prompt='a CNN for CIFAR-10 with mixed precision', verify=False))\n"
        "import deepdive.codegen.verify\n"
        "bad = [m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad or not r.code else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------------------------------
# A model backend: the repair loop against a local OpenAI-compatible server
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_repair_loop_fixes_a_broken_program() -> None:
    good = reference_code()
    broken = good + f"\nraise RuntimeError({MARK!r})\n"

    def reply(body: dict) -> str:
        chat = json.dumps(body["messages"])
        if MARK in chat and len(body["messages"]) > 2:
            return f"Fixed:\n```python\n{good}```\n"
        return f"Here is the program.\n```python\n{broken}```\nIt trains an MLP.\n"

    partials, on_partial = collect()
    with ChatServer(reply, chunk=50) as srv:
        params = GenerateParams(prompt=PROMPT, backend="openai-compatible", endpoint=srv.url, model="coder")
        result = generate(params, on_partial=on_partial, cancel=threading.Event(), frame=False)
    assert result.verified, result.message
    assert result.rounds == 1
    assert result.code == good
    assert result.backend == "openai-compatible" and result.message is None
    assert result.filename == builtin.generate(parse_intent(PROMPT)).filename

    # What the model was told.
    assert len(srv.requests) == 2
    first, second = srv.requests
    system = first["messages"][0]
    assert system["role"] == "system"
    for word in ("build_model()", "example_batch()", "main()", "--smoke", "4 units"):
        assert word in system["content"], word
    assert good.strip() in system["content"]  # the builtin program as the reference
    assert first["messages"][1]["role"] == "user" and PROMPT in first["messages"][1]["content"]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert broken in second["messages"][2]["content"]
    feedback = second["messages"][3]["content"]
    assert "failed verification" in feedback and MARK in feedback  # the stderr tail reached the model

    # What the client saw.
    kinds = [p.kind for p in partials]
    assert kinds.count("reset") == 1
    phases = [p.text for p in partials if p.kind == "phase"]
    assert phases == ["generating", "verifying", "repairing", "verifying"]
    reset_at = kinds.index("reset")
    before = "".join(p.text for p in partials[:reset_at] if p.kind == "text")
    after = "".join(p.text for p in partials[reset_at:] if p.kind == "text")
    assert before == broken and after == good  # the editor saw the programs, not the prose around them
    assert len([k for k in kinds[:reset_at] if k == "text"]) > 10  # streamed in many chunks
    failed_first = [p.check for p in partials[:reset_at] if p.kind == "check" and not p.check.ok]
    assert failed_first  # the failing check was streamed before the repair
    assert [p.check for p in partials[reset_at:] if p.kind == "check"] == result.checks


def test_repair_gives_up_after_two_rounds() -> None:
    answers = ["```python\ndef build_model(:\n    pass\n```", "no code at all, sorry", "```python\nimport torch\nx = (\n```"]

    def reply(body: dict) -> str:
        return answers[min(len(body["messages"]) // 2 - 1, 2)]

    partials, on_partial = collect()
    with ChatServer(reply) as srv:
        params = GenerateParams(prompt=PROMPT, backend="openai-compatible", endpoint=srv.url)
        result = generate(params, on_partial=on_partial, frame=False)
    assert len(srv.requests) == 3
    assert result.rounds == 2 and not result.verified
    assert result.message and result.message.startswith("verification failed after 2 repair rounds") and "\n" not in result.message
    assert [p.kind for p in partials].count("reset") == 2
    assert result.code == "import torch\nx = (\n"


def test_model_cancel_mid_stream_stops_before_verification() -> None:
    cancel = threading.Event()
    partials: list[GeneratePartial] = []

    def on_partial(p: GeneratePartial) -> None:
        partials.append(p)
        if sum(1 for q in partials if q.kind == "text") == 3:
            cancel.set()

    text = "```python\n" + "x = 1\n" * 400 + "```"
    with ChatServer(lambda body: text, chunk=4, delay_s=0.02) as srv:  # about 12 s to stream
        params = GenerateParams(prompt=PROMPT, backend="openai-compatible", endpoint=srv.url)
        start = time.monotonic()
        with pytest.raises(Cancelled):
            generate(params, on_partial=on_partial, cancel=cancel, frame=False)
        assert time.monotonic() - start < 3.0
    assert [p.text for p in partials if p.kind == "phase"] == ["generating"]
    assert sum(1 for p in partials if p.kind == "text") == 3


def test_remote_endpoint_refused_and_connection_refused() -> None:
    with pytest.raises(BackendError, match="allow_remote"):
        generate(GenerateParams(prompt=PROMPT, backend="openai-compatible", endpoint="http://203.0.113.7:8000"))
    with pytest.raises(ValueError, match="model directory not found"):  # BackendError is a ValueError
        generate(GenerateParams(prompt=PROMPT, backend="transformers", model_path="/nonexistent/model"))
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(BackendError, match="connection refused"):  # a request only a model can write
        generate(GenerateParams(prompt="a U-Net for segmentation of 64x64 grayscale images, 3 classes",
                                backend="openai-compatible", endpoint=f"http://127.0.0.1:{port}"))


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------


def test_extract_code() -> None:
    assert extract_code("Sure:\n```python\nprint(1)\n```\nDone.") == "print(1)\n"
    assert extract_code("```py\na = 1\n```\n```python\nb = 2\nc = 3\n```") == "b = 2\nc = 3\n"  # the longest
    assert extract_code("```\nplain = True\n```") == "plain = True\n"
    assert extract_code("<think>```python\nwrong()\n```</think>```python\nright()\n```") == "right()\n"
    assert extract_code("```python\nunfinished = 1\n") == "unfinished = 1\n"  # cut off by max tokens
    assert extract_code("x = 1\n") == "x = 1\n"  # no fence: the whole answer
    assert extract_code("```bash\npip install x\n```\n```python\nimport x\n```") == "import x\n"
    assert extract_code("") == ""


def test_prompts_name_the_contract_the_stated_properties_and_the_engine() -> None:
    reading = read_request("train a CNN on CIFAR-10 with deepdive's engine and mixed precision, without dropout")
    text = system_prompt(reading.spec, "print('reference')", intent=reading.intent, gaps=["no U-Net template"])
    assert "deepdive.engine" in text
    assert "- training uses mixed precision (torch.autocast)" in text
    assert "- the model contains NO Dropout layer (no module and no functional call of it)" in text
    assert "print('reference')" in text and "The reference does NOT do what the request asks here: no U-Net template." in text
    msg = repair_message(
        [GenerateCheck(name="smoke", ok=False, detail="exit code 1"), GenerateCheck(name="syntax", ok=True)],
        "Traceback ...\nNameError: name 'nn' is not defined",
        None,
    )
    assert "- smoke: exit code 1" in msg and "syntax" not in msg and "NameError" in msg
    failed = PropertyCheck(name="no_layer", expected="Dropout", status="failed", label="no_layer Dropout",
                           detail="model has 2 Dropout modules (features.3, head.1)", text="without dropout")
    msg = repair_message([GenerateCheck(name="properties", ok=False, detail="no_layer Dropout: failed — ...")], "", None,
                         [failed])
    assert '- no_layer Dropout: model has 2 Dropout modules (features.3, head.1) (asked as "without dropout")' in msg
    assert "- properties:" not in msg  # the property's own detail, once


# ------------------------------------------------------------------------------------------------
# Model backends get every request; the repair loop feeds back the failing property's detail
# ------------------------------------------------------------------------------------------------

POLICY_PROGRAM = '''
import argparse
import sys

import torch
from torch import nn


def build_model():
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2))


def example_batch(batch_size=4):
    return torch.randn(batch_size, 4), torch.randint(0, 2, (batch_size,))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.parse_args()
    policy = build_model()
    obs, actions = example_batch()
    logp = torch.log_softmax(policy(obs), -1).gather(1, actions[:, None])
    (-logp.mean()).backward()
    print("smoke ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


@pytest.mark.slow
def test_a_model_backend_gets_a_request_outside_the_builtin_and_a_failed_task_goes_back_to_it() -> None:
    prompt = "a policy network for CartPole with 4 observations and 2 actions"
    with ChatServer(lambda body: f"```python\n{POLICY_PROGRAM}```") as srv:
        params = GenerateParams(prompt=prompt, backend="openai-compatible", endpoint=srv.url)
        result = generate(params, frame=False)
    assert srv.requests, "the model got the request the builtin has no template for"
    system, user = srv.requests[0]["messages"][0]["content"], srv.requests[0]["messages"][1]["content"]
    assert "the task is a policy network trained from rewards" in system
    assert prompt in user and "Understood as: " in user and 'task="policy"' in user
    assert result.code == POLICY_PROGRAM.lstrip("\n") and result.backend == "openai-compatible"
    # Behaviour cloning (a cross-entropy on action labels) has a policy's shapes but no rewards.
    task = next(p for p in result.properties if p.name == "task")
    assert task.status == "failed" and "reward" in task.detail
    assert len(srv.requests) == 3 and not result.verified and result.rounds == 2
    assert "reward" in srv.requests[1]["messages"][-1]["content"]  # the check's own words went back
    assert result.message.startswith("verification failed after 2 repair rounds") and "task policy" in result.message


@pytest.mark.slow
def test_the_repair_loop_feeds_back_the_failing_propertys_own_detail() -> None:
    prompt = PROMPT + ", without dropout"
    with_dropout = reference_code()
    without = with_dropout.replace(", nn.Dropout(DROPOUT)]", "]")
    assert without != with_dropout and "nn.Dropout(" not in without

    def reply(body: dict) -> str:
        return f"```python\n{without if len(body['messages']) > 2 else with_dropout}```"

    with ChatServer(reply) as srv:
        params = GenerateParams(prompt=prompt, backend="openai-compatible", endpoint=srv.url)
        result = generate(params, frame=False)
    assert len(srv.requests) == 2
    assert "- the model contains NO Dropout layer" in srv.requests[0]["messages"][0]["content"]
    feedback = srv.requests[1]["messages"][3]["content"]
    assert "Stated properties the program does not meet:\n- no_layer Dropout: model has 1 Dropout module (3)" in feedback
    assert result.verified, result.message
    assert result.rounds == 1 and result.code == without
    assert next(p for p in result.properties if p.name == "no_layer").status == "met"


# ------------------------------------------------------------------------------------------------
# The transformers backend through the pipeline (a random tiny model: it never writes a program)
# ------------------------------------------------------------------------------------------------


def _tiny_model_builder():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_codegen_test_backends", Path(__file__).with_name("test_backends.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_model


@pytest.mark.slow
def test_transformers_backend_through_the_pipeline(tmp_path) -> None:
    from deepdive.codegen.backends.worker_client import ModelWorker, TransformersBackend

    # 2048 positions: the system prompt with the reference program (about 8,000 tokens of this tiny
    # vocabulary) does not fit, so the pipeline leaves the reference out.
    path = _tiny_model_builder()(tmp_path / "tiny", n_positions=2048)
    worker = ModelWorker()
    try:
        backend = TransformersBackend(str(path), worker=worker, max_new_tokens=16)
        partials, on_partial = collect()
        params = GenerateParams(prompt=PROMPT, backend="transformers", model_path=str(path))
        result = generate(params, on_partial=on_partial, backend=backend, frame=False)
        assert result.backend == "transformers" and not result.verified
        assert result.rounds == 2
        assert result.message and result.message.startswith("verification failed after 2 repair rounds") and "\n" not in result.message
        kinds = [p.kind for p in partials]
        assert kinds.count("reset") == 2
        texts = [i for i, k in enumerate(kinds) if k == "text"]
        resets = [i for i, k in enumerate(kinds) if k == "reset"]
        assert texts[0] < resets[0] < texts[-1] and any(resets[0] < i < resets[1] for i in texts)  # 3 answers
        assert worker.restarts == 0 and worker.loaded == ("transformers", str(path))  # loaded once, kept
    finally:
        worker.shutdown()


@pytest.mark.slow
def test_a_local_model_gets_a_request_the_builtin_has_no_template_for(tmp_path) -> None:
    from deepdive.codegen.backends.worker_client import ModelWorker, TransformersBackend

    prompt = "a graph neural network for node classification on a citation graph"
    path = _tiny_model_builder()(tmp_path / "tiny")
    worker = ModelWorker()
    try:
        backend = TransformersBackend(str(path), worker=worker, max_new_tokens=8)
        partials, on_partial = collect()
        params = GenerateParams(prompt=prompt, backend="transformers", model_path=str(path))
        result = generate(params, on_partial=on_partial, backend=backend, frame=False)
    finally:
        worker.shutdown()
    assert [p.text for p in partials if p.kind == "phase"][0] == "generating"  # the model, not a refusal
    assert result.backend == "transformers" and not result.verified and result.rounds == 2
    assert result.understood_as["prompt"] == prompt
    assert result.message.startswith("verification failed after 2 repair rounds: ")


@pytest.mark.parametrize(
    "answer",
    [
        "Here you go:\n```python\nimport torch\nx = 1\n```\nThat's it, with ```python fences.",
        "```python\na = 1\nb = '```'  # a fence inside a line\n  ```\n",
        "<think>maybe ```python\nno()\n```</think>\n```py\nok = 1\n```",
        "x = 1\ny = 2\n",
        "```python\nunclosed = 1\nz",
        "Sure.\n\n```\nplain = True\n```",
    ],
)
def test_code_stream_shows_the_program_while_it_streams(answer: str) -> None:
    for step in (1, 2, 3, 5, 8, 13, len(answer)):
        cs = CodeStream()
        out = "".join(cs.feed(answer[i : i + step]) for i in range(0, len(answer), step)) + cs.finish()
        assert out.rstrip("\n") == extract_code(answer).rstrip("\n"), (step, out)
        assert "```" not in out.replace("b = '```'", "")


def test_code_stream_passes_bare_code_through_after_the_prose_limit() -> None:
    cs = CodeStream()
    first = cs.feed("import torch\n" * 100)  # 1300 characters, no fence: bare code
    assert first == "import torch\n" * 100
    assert cs.feed("x = 1\n") == "x = 1\n"


def test_a_prompt_too_long_for_the_server_drops_the_reference() -> None:
    good = reference_code()


    srv = ChatServer(lambda body: f"```python\n{good}```")
    handler = srv.httpd.RequestHandlerClass
    original = handler.do_POST

    def do_post(self) -> None:  # noqa: ANN001
        # The first request (system prompt with the reference) overflows this "model's" context.
        if not srv.requests:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            srv.requests.append(body)
            data = json.dumps(
                {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 9000."}}
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        original(self)

    handler.do_POST = do_post
    with srv:
        params = GenerateParams(prompt=PROMPT, backend="openai-compatible", endpoint=srv.url, verify=False)
        result = generate(params, frame=False)
    assert result.code == good and result.rounds == 0
    assert len(srv.requests) == 2
    first, second = (r["messages"][0]["content"] for r in srv.requests)
    assert good.strip() in first and good.strip() not in second
    assert "build_model()" in second  # the contract stays
