"""Open Inference Protocol v2 (KServe / Triton) REST tensors: a request's inputs in, the outputs back.

A request body is JSON (``{"id", "parameters", "inputs": [{name, shape, datatype, data}], "outputs"}``),
``data`` flat or nested in row-major order, or, with the **binary-data extension**, a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw little-endian tensors, each input that
is sent this way saying its size in ``parameters.binary_data_size`` (in the order of the ``inputs``).

The response carries each output as JSON ``data``, or as raw bytes after the JSON header when asked:
the request's ``parameters.binary_data_output`` for all outputs, or an output's own
``parameters.binary_data`` (which wins). Then the response has ``Inference-Header-Content-Length``
and each binary output ``parameters.binary_data_size``.

Validation is against the manifest's :class:`~deepdive.deploy.manifest.TensorSpec` (a ``-1`` dimension
is free); every problem is one :class:`OIPError` line naming the input and what to send instead.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Sequence

import attrs
import numpy as np

from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import DATATYPES, TensorSpec

HEADER = "Inference-Header-Content-Length"
"""The binary-data extension's header: the length of the JSON part of the body."""


class OIPError(DeployError):
    """A malformed or mismatched inference request (HTTP 400); one line naming the input at fault."""

    status = 400


def _dtype(datatype: str) -> np.dtype[Any]:
    return np.dtype(DATATYPES[datatype]).newbyteorder("<")


@attrs.define
class InferRequest:
    inputs: list[np.ndarray]
    """One array per manifest input, in the manifest's order, batch first."""
    id: Optional[str] = None
    outputs: Optional[list[tuple[str, Optional[bool]]]] = None
    """The outputs asked for (name, binary or None for the default); None: all of them."""
    binary_default: bool = False
    """``parameters.binary_data_output``: outputs binary unless they say otherwise."""
    timeout_ms: Optional[float] = None
    """The client's own timeout (Triton's ``parameters.timeout``, in microseconds on the wire)."""


def _shape(name: str, value: Any, spec: TensorSpec) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise OIPError(f"input {name!r}: shape must be a list of non-negative integers, e.g. {_example(spec)}")
    if len(value) != len(spec.shape) or any(s != -1 and s != d for s, d in zip(spec.shape, value)):
        raise OIPError(f"input {name!r}: shape {value} does not match the model's {spec.shape} "
                       "(-1 is any size): send that shape")
    return value


def _example(spec: TensorSpec) -> list[int]:
    return [1 if d == -1 else d for d in spec.shape]


def _json_data(name: str, data: Any, shape: list[int], dtype: np.dtype[Any]) -> np.ndarray:
    if not isinstance(data, list):
        raise OIPError(f"input {name!r}: data must be a list (flat or nested, row-major) or sent as binary data")
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise OIPError(f"input {name!r}: data is not a regular list of {dtype.name} numbers") from None
    expected = math.prod(shape)
    if array.size != expected:
        raise OIPError(f"input {name!r}: data has {array.size} elements where shape {shape} needs {expected}")
    return array.reshape(shape)


def parse_request(body: bytes, header_length: Optional[str], specs: Sequence[TensorSpec], *,
                  outputs: Sequence[TensorSpec] = ()) -> InferRequest:
    """The request's inputs as arrays in the order of ``specs``, checked against them (:class:`OIPError`)."""
    json_end = len(body)
    if header_length is not None:
        try:
            json_end = int(header_length)
        except ValueError:
            raise OIPError(f"{HEADER} {header_length!r} is not a number of bytes") from None
        if not 0 < json_end <= len(body):
            raise OIPError(f"{HEADER} {json_end} is outside the body's {len(body)} bytes")
    try:
        request = json.loads(body[:json_end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise OIPError(f"the request is not JSON ({exc}); with binary data set {HEADER} to the JSON part's length") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise OIPError('the request must be a JSON object with "inputs": [{"name", "shape", "datatype", "data"}]')
    by_name = {s.name: s for s in specs}
    binary = memoryview(body)[json_end:]
    cursor = 0
    arrays: dict[str, np.ndarray] = {}
    for item in request["inputs"]:
        if not isinstance(item, dict):
            raise OIPError("each input must be an object with name, shape, datatype and data")
        name = item.get("name")
        spec = by_name.get(name) if isinstance(name, str) else None
        if spec is None:
            raise OIPError(f"unknown input {name!r}: the model's inputs are {', '.join(by_name)}")
        if name in arrays:
            raise OIPError(f"input {name!r} is given twice")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            raise OIPError(f"input {name!r}: datatype {datatype!r} is not the model's {spec.datatype}: send {spec.datatype}")
        shape = _shape(name, item.get("shape"), spec)
        dtype = _dtype(spec.datatype)
        parameters = item.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise OIPError(f"input {name!r}: parameters must be an object")
        if "shared_memory_region" in parameters:
            raise OIPError(f"input {name!r}: shared memory is not supported by this server: send the data in the request")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise OIPError(f"input {name!r}: binary_data_size must be a byte count")
            expected = math.prod(shape) * dtype.itemsize
            if size != expected:
                raise OIPError(f"input {name!r}: binary_data_size {size} is not the {expected} bytes of shape {shape} "
                               f"in {spec.datatype}")
            if cursor + size > len(binary):
                raise OIPError(f"input {name!r}: the body holds {len(binary) - cursor} bytes of binary data where "
                               f"{size} are needed (check {HEADER})")
            # a copy: the body's bytes are read-only, and torch.from_numpy wants a writable array
            array = np.frombuffer(binary[cursor:cursor + size], dtype=dtype).reshape(shape).copy()
            cursor += size
        else:
            if "data" not in item:
                raise OIPError(f"input {name!r} has no data: add \"data\" or send it as binary data")
            array = _json_data(name, item["data"], shape, dtype)
        arrays[name] = array.astype(array.dtype.newbyteorder("="), copy=False)
    if cursor != len(binary):
        raise OIPError(f"the body has {len(binary) - cursor} bytes of binary data that no input's binary_data_size claims")
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise OIPError(f"missing input {', '.join(repr(m) for m in missing)}: the model's inputs are "
                       f"{', '.join(by_name)}")
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise OIPError("the request's parameters must be an object")
    wanted: Optional[list[tuple[str, Optional[bool]]]] = None
    if request.get("outputs") is not None:
        known = {s.name for s in outputs}
        if not isinstance(request["outputs"], list):
            raise OIPError('"outputs" must be a list of {"name": ..., "parameters": {"binary_data": true|false}}')
        wanted = []
        for item in request["outputs"]:
            oname = item.get("name") if isinstance(item, dict) else None
            if oname not in known:
                raise OIPError(f"unknown output {oname!r}: the model's outputs are {', '.join(sorted(known))}")
            oparams = item.get("parameters") or {}
            if not isinstance(oparams, dict):
                raise OIPError(f"output {oname!r}: parameters must be an object")
            if oparams.get("shared_memory_region") is not None:
                raise OIPError(f"output {oname!r}: shared memory is not supported by this server")
            flag = oparams.get("binary_data")
            wanted.append((oname, None if flag is None else bool(flag)))
    timeout = params.get("timeout")
    timeout_ms = float(timeout) / 1000.0 if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0 else None
    request_id = request.get("id")
    return InferRequest(inputs=[arrays[s.name] for s in specs], id=None if request_id is None else str(request_id),
                        outputs=wanted, binary_default=bool(params.get("binary_data_output", False)),
                        timeout_ms=timeout_ms)


def encode_response(model: str, version: str, request: InferRequest, arrays: Sequence[np.ndarray],
                    specs: Sequence[TensorSpec]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: outputs as JSON data, or binary after the JSON when asked."""
    by_name = {s.name: (s, a) for s, a in zip(specs, arrays)}
    wanted = request.outputs if request.outputs is not None else [(s.name, None) for s in specs]
    described: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, flag in wanted:
        spec, array = by_name[name]
        datatype = spec.datatype
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if flag if flag is not None else request.binary_default:
            raw = np.ascontiguousarray(array, dtype=_dtype(datatype)).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.astype(DATATYPES[datatype], copy=False).reshape(-1).tolist()
        described.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        response["id"] = request.id
    head = json.dumps(response, separators=(",", ":")).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream", HEADER: str(len(head))}


def encode_request(inputs: dict[str, np.ndarray], *, binary: bool = False, outputs: Optional[dict[str, bool]] = None,
                   request_id: Optional[str] = None) -> tuple[bytes, dict[str, str]]:
    """An infer request body and headers (for the benchmark's clients and the tests; tritonclient does the same)."""
    from deepdive.deploy.manifest import TO_DATATYPE

    described, chunks = [], []
    for name, array in inputs.items():
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": TO_DATATYPE[array.dtype.name]}
        if binary:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        described.append(entry)
    body: dict[str, Any] = {"inputs": described}
    if request_id is not None:
        body["id"] = request_id
    if outputs is not None:
        body["outputs"] = [{"name": n, "parameters": {"binary_data": b}} for n, b in outputs.items()]
    head = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream", HEADER: str(len(head))}


def decode_response(body: bytes, header_length: Optional[str]) -> dict[str, np.ndarray]:
    """The outputs of a response body (JSON or binary-data), by name."""
    end = int(header_length) if header_length is not None else len(body)
    response = json.loads(body[:end])
    cursor = end
    out = {}
    for item in response["outputs"]:
        dtype = _dtype(item["datatype"])
        size = (item.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            out[item["name"]] = np.frombuffer(body[cursor:cursor + size], dtype=dtype).reshape(item["shape"])
            cursor += size
        else:
            out[item["name"]] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
    return out
