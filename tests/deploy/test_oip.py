"""Open Inference Protocol v2 tensors: JSON (flat and nested), the binary-data extension, one-line 400s."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepdive.deploy.manifest import TensorSpec
from deepdive.deploy.oip import HEADER, OIPError, decode_response, encode_request, encode_response, parse_request

IMAGE = TensorSpec("input__0", "FP32", [-1, 2, 3])
IDS = TensorSpec("input__1", "INT64", [-1, 4])
OUTS = [TensorSpec("output__0", "FP32", [-1, 5]), TensorSpec("output__1", "INT64", [-1])]


def _body(inputs: list[dict], **extra: object) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _image(rows: int = 2) -> np.ndarray:
    return np.arange(rows * 6, dtype=np.float32).reshape(rows, 2, 3) / 7


def _ids(rows: int = 2) -> np.ndarray:
    return (np.arange(rows * 4, dtype=np.int64).reshape(rows, 4) - 3) * (2**40)


def test_json_inputs_flat_or_nested_give_the_same_arrays_in_the_manifest_order() -> None:
    image, ids = _image(), _ids()
    flat = _body([{"name": "input__1", "shape": [2, 4], "datatype": "INT64", "data": ids.reshape(-1).tolist()},
                  {"name": "input__0", "shape": [2, 2, 3], "datatype": "FP32", "data": image.reshape(-1).tolist()}],
                 id="r-1")
    nested = _body([{"name": "input__0", "shape": [2, 2, 3], "datatype": "FP32", "data": image.tolist()},
                    {"name": "input__1", "shape": [2, 4], "datatype": "INT64", "data": ids.tolist()}])
    for body in (flat, nested):
        request = parse_request(body, None, [IMAGE, IDS], outputs=OUTS)
        np.testing.assert_array_equal(request.inputs[0], image)
        np.testing.assert_array_equal(request.inputs[1], ids)  # int64 beyond 2**53 kept exactly
        assert request.inputs[0].dtype == np.float32 and request.inputs[1].dtype == np.int64
    assert parse_request(flat, None, [IMAGE, IDS]).id == "r-1"


def test_binary_inputs_are_little_endian_bytes_after_the_json_header() -> None:
    image, ids = _image(3), _ids(3)
    body, headers = encode_request({"input__0": image, "input__1": ids}, binary=True)
    head = int(headers[HEADER])
    assert body[head:head + image.nbytes] == image.astype("<f4").tobytes()
    request = parse_request(body, headers[HEADER], [IMAGE, IDS])
    np.testing.assert_array_equal(request.inputs[0], image)
    np.testing.assert_array_equal(request.inputs[1], ids)


def test_mixed_json_and_binary_inputs() -> None:
    image, ids = _image(), _ids()
    head = json.dumps({"inputs": [
        {"name": "input__0", "shape": [2, 2, 3], "datatype": "FP32", "data": image.tolist()},
        {"name": "input__1", "shape": [2, 4], "datatype": "INT64", "parameters": {"binary_data_size": ids.nbytes}}]}).encode()
    request = parse_request(head + ids.astype("<i8").tobytes(), str(len(head)), [IMAGE, IDS])
    np.testing.assert_array_equal(request.inputs[1], ids)


def test_outputs_json_by_default_binary_when_asked_per_output_wins() -> None:
    outputs = [np.linspace(-1, 1, 10, dtype=np.float32).reshape(2, 5), np.array([7, -2**40], dtype=np.int64)]
    base = [{"name": "input__0", "shape": [2, 2, 3], "datatype": "FP32", "data": _image().tolist()},
            {"name": "input__1", "shape": [2, 4], "datatype": "INT64", "data": _ids().tolist()}]

    def answer(**extra: object) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
        request = parse_request(_body(base, **extra), None, [IMAGE, IDS], outputs=OUTS)
        body, headers = encode_response("m", "1", request, outputs, OUTS)
        end = int(headers.get(HEADER, len(body)))
        return json.loads(body[:end]), decode_response(body, headers.get(HEADER)), headers

    plain, arrays, headers = answer()
    assert HEADER not in headers and headers["content-type"] == "application/json"
    assert plain["outputs"][0]["data"] == outputs[0].reshape(-1).tolist() and plain["model_name"] == "m"
    np.testing.assert_array_equal(arrays["output__1"], outputs[1])

    binary, arrays, headers = answer(parameters={"binary_data_output": True})
    assert [o["parameters"]["binary_data_size"] for o in binary["outputs"]] == [40, 16]
    assert all("data" not in o for o in binary["outputs"])
    np.testing.assert_array_equal(arrays["output__0"], outputs[0])
    np.testing.assert_array_equal(arrays["output__1"], outputs[1])

    chosen, arrays, _ = answer(parameters={"binary_data_output": True},
                               outputs=[{"name": "output__1", "parameters": {"binary_data": False}}])
    assert [o["name"] for o in chosen["outputs"]] == ["output__1"]  # only what was asked for
    assert chosen["outputs"][0]["data"] == [7, -2**40]


@pytest.mark.parametrize(("item", "message"), [
    ({"name": "pixels", "shape": [1, 2, 3], "datatype": "FP32", "data": [0] * 6}, "unknown input 'pixels': the model's inputs are input__0"),
    ({"name": "input__0", "shape": [1, 2, 3], "datatype": "FP64", "data": [0] * 6}, "datatype 'FP64' is not the model's FP32"),
    ({"name": "input__0", "shape": [1, 3, 2], "datatype": "FP32", "data": [0] * 6}, r"shape \[1, 3, 2\] does not match the model's \[-1, 2, 3\]"),
    ({"name": "input__0", "shape": [1, 2], "datatype": "FP32", "data": [0] * 2}, "does not match the model's"),
    ({"name": "input__0", "shape": [1, 2, 3], "datatype": "FP32", "data": [0] * 5}, r"data has 5 elements where shape \[1, 2, 3\] needs 6"),
    ({"name": "input__0", "shape": [1, 2, 3], "datatype": "FP32", "data": [[0, 1], [2]]}, "not a regular list"),
    ({"name": "input__0", "shape": [1, 2, 3], "datatype": "FP32"}, "input 'input__0' has no data"),
    ({"name": "input__0", "shape": "1x2x3", "datatype": "FP32", "data": [0] * 6}, "shape must be a list"),
])
def test_bad_inputs_are_refused_in_one_line_naming_the_input(item: dict, message: str) -> None:
    with pytest.raises(OIPError, match=message) as caught:
        parse_request(_body([item]), None, [IMAGE])
    assert "\n" not in str(caught.value)


def test_the_batch_dimension_is_free() -> None:
    for rows in (1, 5):
        item = {"name": "input__0", "shape": [rows, 2, 3], "datatype": "FP32", "data": [0.5] * (rows * 6)}
        assert parse_request(_body([item]), None, [IMAGE]).inputs[0].shape == (rows, 2, 3)


def test_binary_byte_counts_must_match() -> None:
    image = _image(1)
    head = json.dumps({"inputs": [{"name": "input__0", "shape": [1, 2, 3], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 20}}]}).encode()
    with pytest.raises(OIPError, match="binary_data_size 20 is not the 24 bytes"):
        parse_request(head + image.tobytes(), str(len(head)), [IMAGE])
    body, headers = encode_request({"input__0": image}, binary=True)
    with pytest.raises(OIPError, match="holds 20 bytes of binary data where 24 are needed"):
        parse_request(body[:-4], headers[HEADER], [IMAGE])
    with pytest.raises(OIPError, match="4 bytes of binary data that no input"):
        parse_request(body + b"\0" * 4, headers[HEADER], [IMAGE])
    with pytest.raises(OIPError, match=f"{HEADER} 99999 is outside"):
        parse_request(body, "99999", [IMAGE])


def test_missing_inputs_duplicates_unknown_outputs_and_non_json() -> None:
    image = {"name": "input__0", "shape": [1, 2, 3], "datatype": "FP32", "data": [0] * 6}
    with pytest.raises(OIPError, match="missing input 'input__1'"):
        parse_request(_body([image]), None, [IMAGE, IDS])
    with pytest.raises(OIPError, match="given twice"):
        parse_request(_body([image, image]), None, [IMAGE])
    with pytest.raises(OIPError, match="unknown output 'logits'"):
        parse_request(_body([image], outputs=[{"name": "logits"}]), None, [IMAGE], outputs=OUTS)
    with pytest.raises(OIPError, match="not JSON"):
        parse_request(b"\x00garbage", None, [IMAGE])
    with pytest.raises(OIPError, match='"inputs"'):
        parse_request(b'{"data": []}', None, [IMAGE])


def test_the_clients_timeout_parameter_is_read_in_microseconds() -> None:
    image = {"name": "input__0", "shape": [1, 2, 3], "datatype": "FP32", "data": [0] * 6}
    assert parse_request(_body([image], parameters={"timeout": 250000}), None, [IMAGE]).timeout_ms == 250.0
    assert parse_request(_body([image]), None, [IMAGE]).timeout_ms is None
