"""The inference server: Starlette's TestClient, a real uvicorn on a free 127.0.0.1 port, and the CLI."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from deepdive.deploy import manifest as manifest_mod
from deepdive.deploy.app import ServerThread, create_app
from deepdive.deploy.batcher import BatchConfig
from deepdive.deploy.oip import HEADER, decode_response, encode_request
from deepdive.deploy.runners import open_runner
from tests.deploy._serving import Gated, rows, served_digits, served_gated

REPO = Path(__file__).resolve().parents[2]
INFER = "/v2/models/digits_cnn/infer"


def _examples(folder: Path) -> np.ndarray:
    return manifest_mod.read(folder).example_rows(folder)["input__0"]


def _expected(folder: Path, x: np.ndarray) -> np.ndarray:
    m = manifest_mod.read(folder)
    return open_runner(folder, m, "eager").run([x])[0]


def _json_infer(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "input__0", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}


def test_health_metadata_and_infer_through_the_app(digits_export: Path) -> None:
    x = _examples(digits_export)[:3]
    with TestClient(create_app(served_digits(digits_export))) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
        meta = client.get("/v2/models/digits_cnn").json()
        assert meta["inputs"] == [{"name": "input__0", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
        assert meta["outputs"] == [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}]
        assert client.get("/v2/models/digits_cnn/versions/1").json() == meta
        assert client.get("/v2/models/digits_cnn/ready").status_code == 200
        assert client.get("/v2/models/other").status_code == 404
        assert "version" in client.get("/v2/models/digits_cnn/versions/7/ready").json()["error"]

        answer = client.post(INFER, json=_json_infer(x))
        assert answer.status_code == 200, answer.text
        out = answer.json()["outputs"][0]
        assert out["shape"] == [3, 10]
        np.testing.assert_allclose(np.asarray(out["data"]).reshape(3, 10), _expected(digits_export, x), atol=1e-4)

        body, headers = encode_request({"input__0": x}, binary=True, outputs={"output__0": True})
        answer = client.post("/v2/models/digits_cnn/versions/1/infer", content=body, headers=headers)
        assert answer.status_code == 200 and HEADER in answer.headers
        outputs = decode_response(answer.content, answer.headers[HEADER])
        np.testing.assert_allclose(outputs["output__0"], _expected(digits_export, x), atol=1e-4)

        bad = client.post(INFER, json={"inputs": [{"name": "input__0", "shape": [1, 1, 8, 7], "datatype": "FP32",
                                                   "data": [0.0] * 56}]})
        assert bad.status_code == 400 and "input 'input__0': shape [1, 1, 8, 7]" in bad.json()["error"]
        assert client.post("/v2/models/digits_cnn/infer", content=b"x", headers={"content-encoding": "gzip"}).status_code == 415

        metrics = client.get("/metrics").text
        assert 'deepdive_serve_requests_total{endpoint="infer",model="digits_cnn",status="200"} 2.0' in metrics
        assert 'deepdive_serve_requests_total{endpoint="infer",model="digits_cnn",status="400"} 1.0' in metrics
        assert 'deepdive_serve_batch_size_count{model="digits_cnn"} 2.0' in metrics
        assert 'deepdive_serve_batch_size_sum{model="digits_cnn"} 6.0' in metrics
        assert re.search(r'deepdive_serve_request_latency_seconds_count\{model="digits_cnn"\} 2\.0', metrics)
        assert 'deepdive_serve_inferences_total{model="digits_cnn",outcome="ok"} 2.0' in metrics
        snapshot = client.get("/deepdive/snapshot").json()
        assert snapshot["batch_size_histogram"] == {"3": 2} and snapshot["model"] == "digits_cnn"


def test_token_required_everywhere_but_the_health_probes(digits_export: Path) -> None:
    x = _examples(digits_export)[:1]
    with TestClient(create_app(served_digits(digits_export), token="s3cret")) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        for path in ("/v2", "/v2/models/digits_cnn", "/metrics"):
            denied = client.get(path)
            assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")
        assert client.post(INFER, json=_json_infer(x), headers={"Authorization": "Bearer wrong"}).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.post(INFER, json=_json_infer(x), headers=good).status_code == 200
        assert "deepdive_serve_requests_total" in client.get("/metrics", headers=good).text


def test_bodies_over_the_limit_get_413_declared_or_streamed(digits_export: Path) -> None:
    x = _examples(digits_export)[:4]
    body, headers = encode_request({"input__0": x}, binary=True)  # 1 KiB of floats plus the header
    with TestClient(create_app(served_digits(digits_export), max_body_bytes=1000)) as client:
        declared = client.post(INFER, content=body, headers=headers)
        assert declared.status_code == 413 and "--max-body-mb" in declared.json()["error"]
        streamed = client.post(INFER, content=iter([body[:600], body[600:]]), headers=headers)  # chunked: no length
        assert streamed.status_code == 413
        small, small_headers = encode_request({"input__0": x[:1]}, binary=True)
        assert client.post(INFER, content=small, headers=small_headers).status_code == 200


def test_concurrent_clients_on_a_real_server_each_get_their_own_answer(digits_export: Path) -> None:
    examples = _examples(digits_export)
    expected = _expected(digits_export, examples)
    served = served_digits(digits_export, BatchConfig(max_batch_size=16, max_queue_delay_us=50000, timeout_ms=20000))
    with ServerThread(create_app(served)) as server:
        assert server.host == "127.0.0.1"

        def client(index: int) -> list[tuple[int, np.ndarray]]:
            got = []
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for k in range(4):
                    row = (index * 4 + k) % len(examples)
                    body, headers = encode_request({"input__0": examples[row:row + 1]}, binary=(k % 2 == 0),
                                                   outputs={"output__0": k % 2 == 0})
                    answer = http.post(INFER, content=body, headers=headers)
                    assert answer.status_code == 200, answer.text
                    got.append((row, decode_response(answer.content, answer.headers.get(HEADER))["output__0"]))
            return got

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            results = [item for chunk in pool.map(client, range(12)) for item in chunk]
        metrics = httpx.get(server.url + "/metrics").text
    for row, output in results:
        np.testing.assert_allclose(output[0], expected[row], atol=1e-4)
    count = float(re.search(r'deepdive_serve_batch_size_count\{model="digits_cnn"\} (\S+)', metrics).group(1))
    assert count < 48  # 48 requests ran in fewer batches: some were joined


def test_full_queue_answers_503_with_retry_after_and_timeouts_504() -> None:
    model = Gated()
    served = served_gated(model, BatchConfig(max_batch_size=1, max_queue_delay_us=0, max_queue=1, timeout_ms=300))
    x = rows(1)
    body = json.dumps({"inputs": [{"name": "input__0", "shape": [1, 3], "datatype": "FP32", "data": x.tolist()}]})
    with ServerThread(create_app(served)) as server:
        model.hold()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = pool.submit(httpx.post, server.url + "/v2/models/gated/infer", content=body, timeout=30)
            assert model.entered.wait(20)
            queued = pool.submit(httpx.post, server.url + "/v2/models/gated/infer", content=body, timeout=30)
            deadline = time.monotonic() + 10
            while served.batcher.queue_depth < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            full = httpx.post(server.url + "/v2/models/gated/infer", content=body, timeout=30)
            assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
            assert "queue is full" in full.json()["error"]
            timed_out = queued.result()
            assert timed_out.status_code == 504
            assert "waited 300 ms in the queue" in timed_out.json()["error"]
            model.gate.set()
            assert running.result().status_code == 200
        metrics = httpx.get(server.url + "/metrics").text
    assert 'deepdive_serve_inferences_total{model="gated",outcome="queue_full"} 1.0' in metrics
    assert 'deepdive_serve_inferences_total{model="gated",outcome="timeout"} 1.0' in metrics
    assert len(model.seen) == 1  # the timed-out request never ran


def test_shutdown_finishes_the_request_in_flight() -> None:
    model = Gated()
    served = served_gated(model, BatchConfig(max_batch_size=4, max_queue_delay_us=0, timeout_ms=30000))
    body = json.dumps({"inputs": [{"name": "input__0", "shape": [1, 3], "datatype": "FP32", "data": rows(4).tolist()}]})
    server = ServerThread(create_app(served)).__enter__()
    model.hold()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(httpx.post, server.url + "/v2/models/gated/infer", content=body, timeout=30)
        assert model.entered.wait(20)
        server.server.should_exit = True  # what SIGTERM/Ctrl-C does
        threading.Timer(0.3, model.gate.set).start()
        answer = running.result()
    server.__exit__(None, None, None)
    assert answer.status_code == 200
    assert answer.json()["outputs"][0]["data"] == (2 * rows(4) + 1).reshape(-1).tolist()
    assert not served.batcher.ready


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from deepdive.cli import main; sys.exit(main())", "deploy", "serve", *args]


def test_cli_serves_until_interrupted(digits_export: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPDIVE_DEPLOY_TOKEN": "t0k"}
    process = subprocess.Popen(_cli(str(digits_export), "--port", "0", "--max-batch", "8", "--preferred", "4,8"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        lines = []
        while not any("metrics:" in line for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line)
        text = "".join(lines)
        assert "batching: max batch 8, queue delay 2000 µs, preferred 4,8" in text and "token required" in text
        url = re.search(r"at (http://127\.0\.0\.1:\d+)/v2/models/digits_cnn", text).group(1)
        x = _examples(digits_export)[:2]
        answer = httpx.post(url + INFER, json=_json_infer(x), headers={"Authorization": "Bearer t0k"}, timeout=30)
        assert answer.status_code == 200
        np.testing.assert_allclose(np.asarray(answer.json()["outputs"][0]["data"]).reshape(2, 10),
                                   _expected(digits_export, x), atol=1e-4)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("flags", "message"), [
    (["--target-p99", "0.001"], "no batch size meets --target-p99 0.001 ms"),
    (["--target-p99", "50", "--max-batch", "4", "--max-queue-delay-us", "60000"],
     "--max-batch 4 with --max-queue-delay-us 60000 predicts p99"),
    (["--preferred", "8,x"], "--preferred '8,x' is not a list of batch sizes"),
    (["--preferred", "64"], "preferred batch sizes 64 are outside 1..32"),
    (["--target-p99", "50", "--no-batching"], "drop --no-batching"),
    (["--clients", "8"], "--clients is the load --target-p99 plans for"),
    (["--form", "tflite"], "unknown form 'tflite'"),
])
def test_cli_refuses_bad_settings_in_one_line(digits_export: Path, flags: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from deepdive.cli import main

    assert main(["deploy", "serve", str(digits_export), "--port", "0", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0, err


def test_the_model_never_runs_on_the_main_thread(digits_export: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Opening, warming and the --target-p99 measurements run the model off the main thread: a torch op on
    the main thread keeps its OpenMP team alive and slows every op the serving threads run (2.7x a row on
    BERT-mini at 2 threads). The impossible target is refused after all of them have run."""
    import threading

    from deepdive.cli import main
    from deepdive.deploy.runners import TorchRunner

    calls: list[bool] = []
    plain = TorchRunner.run

    def run(self: TorchRunner, inputs: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(threading.current_thread() is threading.main_thread())
        return plain(self, inputs)

    monkeypatch.setattr(TorchRunner, "run", run)
    assert main(["deploy", "serve", str(digits_export), "--port", "0", "--target-p99", "0.001"]) == 2
    assert "no batch size meets --target-p99 0.001 ms" in capsys.readouterr().err
    assert len(calls) > 10 and not any(calls), calls  # warm-up, measurements and the probe's requests ran


def test_the_servers_own_work_per_request_is_measured_on_its_event_loop(digits_export: Path) -> None:
    """The loop thread's CPU time per JSON infer request, with the token checked: the answers must be 200s
    (a refused request would measure the wrong path), and the number is a real, small, positive time."""
    from deepdive.deploy.app import request_work

    examples = _examples(digits_export)
    served = served_digits(digits_export, BatchConfig.off(max_batch_size=1))
    work = request_work(served, [examples], token="s3cret", requests=40, warmup=5)
    assert work is not None and 0.0 < work < 50.0
    # the probe's own metrics saw every request answered by the model (warm-up included): none refused
    registry = served.metrics.registry
    assert registry.get_sample_value("deepdive_serve_requests_total",
                                     {"model": served.name, "endpoint": "infer", "status": "200"}) == 45


def test_cli_target_p99_chooses_and_says_why(digits_export: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_cli(str(digits_export), "--port", "0", "--target-p99", "200"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        lines = []
        while not any("metrics:" in line for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line)
        text = "".join(lines)
        chosen = re.search(r"--target-p99 200 ms: max batch (\d+): .* queue delay (\d+) µs; predicted p99 ([\d.]+) ms", text)
        assert chosen, text
        assert float(chosen.group(3)) <= 200
        assert f"batching: max batch {chosen.group(1)}, queue delay {chosen.group(2)} µs" in text
        assert "measured p99 per batch: 1:" in text
        work = re.search(r"the server's own work per request \(HTTP, JSON; its event loop's CPU time, measured here\): "
                         r"([\d.]+) ms", text)
        assert work and 0 < float(work.group(1)) < 50, text
        process.send_signal(signal.SIGTERM)  # what cancelling the editor's deploy-serve job sends
        assert process.wait(30) == 0
        assert "stopped (in-flight requests finished)" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_warns_when_listening_beyond_this_machine(digits_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deepdive.cli import main

    # a bad form stops it right after the warning and the bind (the socket is closed again)
    assert main(["deploy", "serve", str(digits_export), "--host", "0.0.0.0", "--port", "0", "--form", "tflite"]) == 2
    err = capsys.readouterr().err
    assert "warning: listening on 0.0.0.0" in err and "start it with --token" in err
    assert "unknown form 'tflite'" in err
