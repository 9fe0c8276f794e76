"""Model backends: the transformers model worker on a tiny GPT-2 built here, llama.cpp's argument checks,
and the OpenAI-compatible client against a real streaming HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from deepdive.codegen.backends import BackendError, Cancelled, make_backend
from deepdive.codegen.backends.openai_compat import OpenAICompatibleBackend, is_loopback
from deepdive.codegen.backends.worker_client import LlamaCppBackend, ModelWorker, TransformersBackend

PY_LINES = [
    "import torch",
    "import torch.nn as nn",
    "def build_model():",
    "    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))",
    "def example_batch():",
    "    return torch.randn(2, 4), torch.randint(0, 2, (2,))",
    "def main():",
    "    model = build_model()",
    "    x, y = example_batch()",
    "    loss = nn.functional.cross_entropy(model(x), y)",
    "    loss.backward()",
    "if __name__ == '__main__':",
    "    main()",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_model(path: Path, *, chat_template: bool = True, n_positions: int = 4096) -> Path:
    """A random 2-layer GPT-2 with a BPE tokenizer trained here on a few lines of Python (offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(PY_LINES * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    import torch

    torch.manual_seed(0)
    # No eos token: a random model then writes until max_new_tokens (or a cancel).
    config = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=n_positions,
        vocab_size=len(fast),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=fast.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="module")
def worker():
    w = ModelWorker()
    yield w
    w.shutdown()


# ------------------------------------------------------------------------------------------------
# transformers through the model worker
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_loads_once_and_streams_chunks(tiny_model: Path, worker: ModelWorker) -> None:
    backend = TransformersBackend(str(tiny_model), worker=worker, max_new_tokens=60)
    info = backend.load()
    assert info["event"] == "loaded" and info["device"] in ("cpu", "cuda")
    chunks: list[tuple[float, str]] = []
    for text in backend.stream("You write PyTorch.", [{"role": "user", "content": "an MLP"}]):
        chunks.append((time.monotonic(), text))
    assert len(chunks) >= 3, chunks  # several chunks, not one string at the end
    assert chunks[0][0] < chunks[-1][0]
    assert "".join(t for _, t in chunks).strip()
    again = backend.load()  # same model: no second load
    assert again.get("cached") is True
    assert worker.restarts == 0


@pytest.mark.slow
def test_worker_without_chat_template(tmp_path: Path, worker: ModelWorker) -> None:
    plain = build_tiny_model(tmp_path / "plain", chat_template=False)
    backend = TransformersBackend(str(plain), worker=worker, max_new_tokens=20)
    text = "".join(backend.stream("system text", [{"role": "user", "content": "hello"}]))
    assert text
    assert worker.loaded == ("transformers", str(plain))


@pytest.mark.slow
def test_cancel_stops_a_long_generation(tiny_model: Path, worker: ModelWorker) -> None:
    backend = TransformersBackend(str(tiny_model), worker=worker, max_new_tokens=4000)
    backend.load()
    cancel = threading.Event()
    got: list[str] = []
    start = time.monotonic()
    with pytest.raises(Cancelled):
        for text in backend.stream("", [{"role": "user", "content": "go on forever"}], cancel):
            got.append(text)
            if len(got) == 5:
                cancel.set()
                cancelled_at = time.monotonic()
    elapsed = time.monotonic() - cancelled_at
    assert len(got) == 5  # nothing is handed out after the cancel
    assert elapsed < 5.0, elapsed  # 4000 tokens would take far longer on this CPU
    # The worker is free again at once: a short generation after the cancel works.
    short = TransformersBackend(str(tiny_model), worker=worker, max_new_tokens=5)
    assert "".join(short.stream("", [{"role": "user", "content": "x"}]))
    assert worker.restarts == 0
    del start


@pytest.mark.slow
def test_a_warm_up_on_a_runtime_without_a_prompt_cache_says_it_warmed_nothing(tiny_model: Path, worker: ModelWorker) -> None:
    backend = TransformersBackend(str(tiny_model), worker=worker, max_new_tokens=4)
    backend.load()
    worker.last_warm = {}
    worker.warm(["a system prompt"])
    deadline = time.monotonic() + 60
    while not worker.last_warm and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.last_warm == {"id": worker.last_warm["id"], "event": "warmed", "count": 0, "seconds": 0.0}
    assert "".join(backend.stream("", [{"role": "user", "content": "x"}]))  # and the worker goes on


@pytest.mark.slow
def test_release_then_generate_again(tiny_model: Path, worker: ModelWorker) -> None:
    backend = TransformersBackend(str(tiny_model), worker=worker, max_new_tokens=8)
    backend.load()
    assert worker.release() == "cpu"
    assert "".join(backend.stream("", [{"role": "user", "content": "x"}]))


def test_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as err:
        TransformersBackend(str(tmp_path / "nope"))
    assert str(err.value) == f"model directory not found: {tmp_path / 'nope'}"
    with pytest.raises(BackendError, match="needs model_path"):
        make_backend("transformers", model_path=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="no config.json"):
        TransformersBackend(str(tmp_path / "empty"))


@pytest.mark.slow
def test_worker_reports_missing_directory_and_non_causal_model(tmp_path: Path, worker: ModelWorker) -> None:
    # The worker's own checks (the client's are bypassed: the directory vanished after validation).
    with pytest.raises(BackendError) as err:
        worker.load("transformers", str(tmp_path / "gone"))
    assert str(err.value) == f"model directory not found: {tmp_path / 'gone'}"
    assert "\n" not in str(err.value)
    from transformers import ViTConfig

    vit = tmp_path / "vit"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(vit)
    with pytest.raises(BackendError) as err:
        list(TransformersBackend(str(vit), worker=worker).stream("", [{"role": "user", "content": "x"}]))
    assert "is not a causal language model (model type 'vit')" in str(err.value)
    assert "\n" not in str(err.value)
    assert worker.alive  # a failed load does not take the worker down


@pytest.mark.slow
def test_dead_worker_restarts_on_next_request(tiny_model: Path) -> None:
    w = ModelWorker()
    try:
        backend = TransformersBackend(str(tiny_model), worker=w, max_new_tokens=6)
        assert "".join(backend.stream("", [{"role": "user", "content": "x"}]))
        first = w.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while w.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not w.alive
        assert "".join(backend.stream("", [{"role": "user", "content": "x"}]))  # restarted, reloaded
        assert w.pid is not None and w.pid != first
        assert w.restarts == 1
    finally:
        w.shutdown()
    assert not w.alive


@pytest.mark.slow
def test_worker_dying_mid_generation_is_a_clear_error(tiny_model: Path) -> None:
    w = ModelWorker()
    try:
        backend = TransformersBackend(str(tiny_model), worker=w, max_new_tokens=4000)
        with pytest.raises(BackendError, match=r"the model worker exited \(code -9\)"):
            for i, _ in enumerate(backend.stream("", [{"role": "user", "content": "x"}])):
                if i == 2:
                    os.kill(w.pid, signal.SIGKILL)
    finally:
        w.shutdown()


def test_shutdown_without_start_is_a_no_op() -> None:
    w = ModelWorker()
    w.shutdown()
    assert w.release() == "none"
    assert not w.alive


# ------------------------------------------------------------------------------------------------
# llama.cpp (llama-cpp-python is not installed here)
# ------------------------------------------------------------------------------------------------


def test_llamacpp_validates_its_argument(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="needs model_path: a .gguf file"):
        LlamaCppBackend(None)
    with pytest.raises(BackendError, match=f"GGUF file not found: {tmp_path / 'm.gguf'}"):
        LlamaCppBackend(str(tmp_path / "m.gguf"))
    with pytest.raises(BackendError, match="is a directory"):
        LlamaCppBackend(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(BackendError, match="is not a .gguf file"):
        make_backend("llamacpp", model_path=str(tmp_path / "weights.bin"))


def test_llamacpp_missing_module_is_one_line(tmp_path: Path) -> None:
    try:
        import llama_cpp  # noqa: F401

        pytest.skip("llama-cpp-python is installed here")
    except ImportError:
        pass
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    w = ModelWorker()
    try:
        backend = LlamaCppBackend(str(gguf), worker=w)
        with pytest.raises(BackendError) as err:
            list(backend.stream("", [{"role": "user", "content": "x"}]))
        assert str(err.value) == "llama-cpp-python is not installed: pip install 'deepdive[llamacpp]'"
    finally:
        w.shutdown()


def test_unknown_backend() -> None:
    with pytest.raises(BackendError, match="unknown backend 'gpt'"):
        make_backend("gpt")


def test_worker_process_never_imported_into_the_caller() -> None:
    # The daemon side of the backends imports no torch or transformers.
    code = (
        "import sys; import deepdive.codegen.backends.worker_client, deepdive.codegen.backends.openai_compat;"
        "bad=[m for m in ('torch','transformers','tensorflow') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------------------------------
# openai-compatible against a real local server
# ------------------------------------------------------------------------------------------------


class ChatServer:
    """A streaming chat-completions server (SSE) on 127.0.0.1 in a thread."""

    def __init__(
        self, reply, *, delay_s: float = 0.0, chunk: int = 7, status: int = 200, quiet_s: float = 0.0, plain: bool = False
    ) -> None:  # noqa: ANN001
        self.reply = reply  # callable(body) -> text
        self.quiet_s = quiet_s  # silence before the response headers (a server loading its model)
        self.plain = plain  # answer with one JSON object, as a server that ignores "stream" does
        self.delay_s = delay_s
        self.chunk = chunk
        self.status = status
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.disconnected = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: ANN002
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                server.requests.append(body)
                server.paths.append(self.path)
                if server.status != 200:
                    data = json.dumps({"error": {"message": "model 'nope' not found"}}).encode()
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                text = server.reply(body)
                if server.quiet_s:
                    time.sleep(server.quiet_s)
                if server.plain:
                    data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
                    raw = data.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def send(payload: str) -> None:
                    raw = payload.encode()
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    self.wfile.flush()

                try:
                    send(": keep-alive\n\n")
                    for i in range(0, len(text), server.chunk):
                        piece = text[i : i + server.chunk]
                        event = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
                        send(f"data: {json.dumps(event)}\n\n")
                        if server.delay_s:
                            time.sleep(server.delay_s)
                    send('data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
                    send("data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_streams_many_chunks() -> None:
    text = "```python\n" + "\n".join(PY_LINES) + "\n```\n"
    with ChatServer(lambda body: text, chunk=5) as srv:
        backend = OpenAICompatibleBackend(srv.url, model="qwen2.5-coder")
        chunks = list(backend.stream("the system prompt", [{"role": "user", "content": "an MLP"}]))
    assert "".join(chunks) == text
    assert len(chunks) == -(-len(text) // 5)
    assert srv.paths == ["/v1/chat/completions"]
    body = srv.requests[0]
    assert body["stream"] is True and body["model"] == "qwen2.5-coder" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "the system prompt"}
    assert body["messages"][1] == {"role": "user", "content": "an MLP"}


def test_openai_endpoint_with_v1_suffix() -> None:
    with ChatServer(lambda body: "ok") as srv:
        assert "".join(OpenAICompatibleBackend(srv.url + "/v1/").stream("", [{"role": "user", "content": "x"}])) == "ok"
    assert srv.paths == ["/v1/chat/completions"]


def test_openai_refuses_remote_endpoints() -> None:
    with pytest.raises(BackendError) as err:
        OpenAICompatibleBackend("http://gpu-box.example.com:8000")
    assert "not on this machine" in str(err.value) and "allow_remote" in str(err.value)
    with pytest.raises(BackendError, match="allow_remote"):
        make_backend("openai-compatible", endpoint="http://10.0.0.5:11434")
    OpenAICompatibleBackend("http://gpu-box.example.com:8000", allow_remote=True)  # accepted
    for host in ("localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"):
        assert is_loopback(host), host
    assert not is_loopback("192.168.1.2")
    with pytest.raises(BackendError, match="needs endpoint"):
        make_backend("openai-compatible")
    with pytest.raises(BackendError, match="not an http"):
        OpenAICompatibleBackend("ftp://localhost/")


def test_openai_connection_refused_is_clear() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    backend = OpenAICompatibleBackend(f"http://127.0.0.1:{port}")
    with pytest.raises(BackendError) as err:
        list(backend.stream("", [{"role": "user", "content": "x"}]))
    assert str(err.value).startswith(f"cannot connect to http://127.0.0.1:{port}: connection refused")


def test_openai_http_error_is_clear() -> None:
    with ChatServer(lambda body: "", status=404) as srv:
        with pytest.raises(BackendError) as err:
            list(OpenAICompatibleBackend(srv.url, model="nope").stream("", [{"role": "user", "content": "x"}]))
    msg = str(err.value)
    assert "HTTP 404" in msg and "model 'nope' not found" in msg and "\n" not in msg


def test_openai_cancel_mid_stream() -> None:
    text = "x" * 2000
    with ChatServer(lambda body: text, chunk=2, delay_s=0.02) as srv:  # 20 s if read to the end
        cancel = threading.Event()
        got: list[str] = []
        with pytest.raises(Cancelled):
            for piece in OpenAICompatibleBackend(srv.url).stream("", [{"role": "user", "content": "x"}], cancel):
                got.append(piece)
                if len(got) == 3:
                    cancel.set()
                    at = time.monotonic()
        assert time.monotonic() - at < 1.0
        assert len(got) == 3
        assert srv.disconnected.wait(5)  # the server saw the connection go away


def test_openai_cancel_while_the_server_is_quiet() -> None:
    # No response headers yet (the server is loading its model): a cancel still ends the request at once.
    with ChatServer(lambda body: "late", quiet_s=5.0) as srv:
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(Cancelled):
            list(OpenAICompatibleBackend(srv.url).stream("", [{"role": "user", "content": "x"}], cancel))
        assert time.monotonic() - start < 2.0


def test_openai_server_that_ignores_stream() -> None:
    with ChatServer(lambda body: "print('whole')\n", plain=True) as srv:
        assert list(OpenAICompatibleBackend(srv.url).stream("", [{"role": "user", "content": "x"}])) == [
            "print('whole')\n"
        ]


def test_worker_exits_when_its_client_dies(tmp_path: Path) -> None:
    # The daemon killed outright (no shutdown): the worker sees stdin close and exits, no orphan.
    import subprocess

    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from deepdive.codegen.backends.worker_client import ModelWorker\n"
            "w = ModelWorker(); w._ensure_process(); print(w.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid = int(client.stdout.readline())
        os.kill(pid, 0)  # the worker runs
        client.kill()
        client.wait(timeout=10)
        import psutil

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break  # exited; waiting for whoever adopted it to reap it
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the model worker outlived its client")
    finally:
        if client.poll() is None:
            client.kill()


@pytest.mark.slow
def test_cancel_while_loading_and_while_queued(tiny_model: Path) -> None:
    w = ModelWorker()
    try:
        backend = TransformersBackend(str(tiny_model), worker=w, max_new_tokens=4000)
        cancel = threading.Event()
        threading.Timer(0.3, cancel.set).start()  # a cold worker takes seconds to import and load
        start = time.monotonic()
        with pytest.raises(Cancelled):
            list(backend.stream("", [{"role": "user", "content": "x"}], cancel))
        assert time.monotonic() - start < 2.0
        # The next request gets the model (loaded in the background, or loaded now).
        short = TransformersBackend(str(tiny_model), worker=w, max_new_tokens=4)
        assert "".join(short.stream("", [{"role": "user", "content": "x"}]))

        # A second request waits for the first generation; a cancel ends its wait at once.
        first_chunk = threading.Event()
        stop_first = threading.Event()

        def long_run() -> None:
            try:
                for _ in backend.stream("", [{"role": "user", "content": "x"}], stop_first):
                    first_chunk.set()
            except Cancelled:
                pass

        t = threading.Thread(target=long_run)
        t.start()
        assert first_chunk.wait(60)
        queued = threading.Event()
        threading.Timer(0.2, queued.set).start()
        start = time.monotonic()
        with pytest.raises(Cancelled):
            list(short.stream("", [{"role": "user", "content": "y"}], queued))
        assert time.monotonic() - start < 2.0
        stop_first.set()
        t.join(30)
        assert not t.is_alive()
        assert w.restarts == 0
    finally:
        w.shutdown()


@pytest.mark.slow
def test_prompt_too_long_for_the_model(tmp_path: Path, worker: ModelWorker) -> None:
    from deepdive.codegen.backends import PromptTooLong

    small = build_tiny_model(tmp_path / "small", n_positions=128)
    backend = TransformersBackend(str(small), worker=worker, max_new_tokens=64)
    with pytest.raises(PromptTooLong) as err:
        list(backend.stream("import torch\n" * 100, [{"role": "user", "content": "x"}]))
    assert "model's context is 128" in str(err.value) and "\n" not in str(err.value)
    assert "".join(backend.stream("", [{"role": "user", "content": "x"}]))  # a short prompt fits


def test_the_prompt_cache_keeps_warmed_beginnings_and_lets_request_states_go_first() -> None:
    """Over capacity, the least recently used state goes, but a pinned (warmed) one only when nothing else is
    left: a long run of requests must not evict the beginnings of the examples it has not used yet."""
    pytest.importorskip("llama_cpp")
    import numpy as np

    from deepdive.codegen.worker_llamacpp import _lean_cache

    class State:
        def __init__(self) -> None:
            self.llama_state_size = 100
            self.scores = np.ones((4, 3), dtype=np.float32)

    cache = _lean_cache(350)
    cache[(1, 2, 3)] = State()
    cache.pin((1, 2, 3))  # a warmed beginning, never used by a request yet
    cache[(7, 8)] = State()
    cache.pin((7, 8))
    cache[(1, 2, 3, 4)] = State()  # requests' states
    cache[(1, 2, 3, 5)] = State()  # over capacity: the oldest unpinned request state goes, not the warmed ones
    assert list(cache.cache_state) == [(1, 2, 3), (7, 8), (1, 2, 3, 5)]
    assert cache.cache_state[(1, 2, 3, 5)].scores.shape == (1, 3)  # without its copy of the logits buffer
    cache[(9,)] = State()
    assert (7, 8) in cache.cache_state and (1, 2, 3) in cache.cache_state and (1, 2, 3, 5) not in cache.cache_state
    cache.unpin((7, 8))
    cache[(10,)] = State()
    assert (7, 8) not in cache.cache_state and (1, 2, 3) in cache.cache_state
    only_pinned = _lean_cache(150)
    only_pinned[(1,)] = State()
    only_pinned.pin((1,))
    only_pinned[(2,)] = State()
    only_pinned.pin((2,))  # pinned states over capacity: the oldest goes when the next one arrives
    only_pinned[(3,)] = State()
    assert list(only_pinned.cache_state) == [(3,)] and only_pinned.pinned == set()
