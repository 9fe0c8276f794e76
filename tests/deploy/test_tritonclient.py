"""Triton's own HTTP client (``tritonclient[http]`` from PyPI, written by no one here) against the real server."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import numpy as np
import pytest

from deepdive.deploy import manifest as manifest_mod
from deepdive.deploy.app import ServerThread, create_app
from deepdive.deploy.batcher import BatchConfig
from deepdive.deploy.runners import open_runner
from tests.deploy._serving import Gated, rows, served_digits, served_gated

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the dev extra")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = {"Authorization": "Bearer tr1ton"}


def _client(server: ServerThread) -> "httpclient.InferenceServerClient":
    return httpclient.InferenceServerClient(url=f"{server.host}:{server.port}", network_timeout=30.0)


def _inputs(x: np.ndarray, binary: bool) -> list:
    item = httpclient.InferInput("input__0", list(x.shape), "FP32")
    item.set_data_from_numpy(x, binary_data=binary)
    return [item]


def test_tritonclient_health_metadata_and_infer_json_and_binary(digits_export: Path) -> None:
    m = manifest_mod.read(digits_export)
    x = m.example_rows(digits_export)["input__0"][:5]
    expected = open_runner(digits_export, m, "eager").run([x])[0]
    with ServerThread(create_app(served_digits(digits_export), token="tr1ton")) as server:
        client = _client(server)
        try:
            assert client.is_server_live() and client.is_server_ready()  # the probes need no token
            assert client.is_model_ready("digits_cnn", headers=TOKEN)
            assert client.is_model_ready("digits_cnn", model_version="1", headers=TOKEN)
            assert client.get_server_metadata(headers=TOKEN)["extensions"] == ["binary_tensor_data"]
            meta = client.get_model_metadata("digits_cnn", headers=TOKEN)
            assert meta["inputs"][0] == {"name": "input__0", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
            assert meta["outputs"][0]["name"] == "output__0"

            for binary_in in (False, True):
                for binary_out in (False, True):
                    result = client.infer("digits_cnn", _inputs(x, binary_in), headers=TOKEN,
                                          outputs=[httpclient.InferRequestedOutput("output__0", binary_data=binary_out)])
                    out = result.get_output("output__0")
                    assert ("data" not in out) == binary_out  # the server honoured the output's binary_data
                    np.testing.assert_allclose(result.as_numpy("output__0"), expected, atol=1e-4)
            # no outputs named: tritonclient asks for all of them in binary (binary_data_output)
            result = client.infer("digits_cnn", _inputs(x, True), model_version="1", headers=TOKEN, request_id="abc")
            assert result.get_response()["id"] == "abc"
            np.testing.assert_allclose(result.as_numpy("output__0"), expected, atol=1e-4)

            with pytest.raises(InferenceServerException) as denied:
                client.infer("digits_cnn", _inputs(x, True))
            assert denied.value.status() == "401" and "Bearer" in denied.value.message()
            with pytest.raises(InferenceServerException) as denied:
                client.get_model_metadata("digits_cnn")
            assert denied.value.status() == "401"
            with pytest.raises(InferenceServerException) as bad:
                client.infer("digits_cnn", _inputs(x[:, :, :4], True), headers=TOKEN)
            assert bad.value.status() == "400" and "input 'input__0': shape [5, 1, 4, 8]" in bad.value.message()
        finally:
            client.close()


def test_tritonclient_sees_413_when_too_large(digits_export: Path) -> None:
    x = np.zeros((16, 1, 8, 8), dtype=np.float32)  # 4 KiB of floats
    with ServerThread(create_app(served_digits(digits_export), max_body_bytes=2048)) as server:
        client = _client(server)
        try:
            with pytest.raises(InferenceServerException) as large:
                client.infer("digits_cnn", _inputs(x, True))
            assert large.value.status() == "413" and "--max-body-mb" in large.value.message()
            assert client.infer("digits_cnn", _inputs(x[:2], True)).as_numpy("output__0").shape == (2, 10)
        finally:
            client.close()


def test_tritonclient_sees_503_when_the_queue_is_full() -> None:
    model = Gated()
    served = served_gated(model, BatchConfig(max_batch_size=1, max_queue_delay_us=0, max_queue=1, timeout_ms=20000))
    x = rows(3)
    with ServerThread(create_app(served)) as server:
        model.hold()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            clients = [_client(server) for _ in range(3)]
            try:
                running = pool.submit(clients[0].infer, "gated", _inputs(x, True))
                assert model.entered.wait(20)
                queued = pool.submit(clients[1].infer, "gated", _inputs(x, True))
                deadline = time.monotonic() + 10
                while served.batcher.queue_depth < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                with pytest.raises(InferenceServerException) as full:
                    clients[2].infer("gated", _inputs(x, True))
                assert full.value.status() == "503" and "queue is full" in full.value.message()
                model.gate.set()
                for future in (running, queued):
                    np.testing.assert_allclose(future.result().as_numpy("output__0"), 2 * x + 1)
            finally:
                for client in clients:
                    client.close()
