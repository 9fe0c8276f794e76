"""Recorded NVML readings: record every ``pynvml`` call a sampler makes on a GPU, replay them without one.

Why: the NVML sampler (:class:`deepdive.telemetry.samplers.NvmlSampler`) runs for real only where an
NVIDIA driver is. :class:`RecordingNvml` wraps the ``pynvml`` module on a GPU machine and keeps each
call's arguments and answer (or NVML error code); :class:`ReplayNvml` is a stand-in for the module
that gives the same answers to the same calls, so the CPU tests feed real readings of a real GPU
through the sampler (``make gpu-check`` records one into its output folder; copy it to
``tests/fixtures/nvml/``).

Fixture format (JSON, :data:`FORMAT`)::

    {"format": "deepdive-nvml-calls/1",
     "synthetic": bool,                # true: made on a machine without a GPU, by a stand-in
     "source": {...},                  # what recorded it: GPU names, driver, nvidia-ml-py, time
     "calls": [CALL, ...],             # in the order the sampler made them
     "readings": [[GPU, ...], ...]}    # NvmlSampler.sample() as it returned, one list per sample

    CALL: {"fn": "nvmlDeviceGetMemoryInfo", "args": [VALUE, ...], "result": VALUE}
          or {..., "error": int}      # the NVML return code the call raised (pynvml.NVMLError.value)
    VALUE: null, bool, int, float, str, a list of VALUEs, or one of
          {"__handle__": "h0"}        # a device handle or event set (an opaque pointer)
          {"__struct__": "c_nvmlMemory_t", "fields": {name: VALUE}}   # a ctypes structure or union
          {"__bytes__": str}          # a bytes answer (utf-8)
          {"__float__": "nan"}        # a float JSON cannot hold
          {"__repr__": str}           # anything else (not replayable; should not occur)

A replay answers each call from the recorded answers to the same function with the same arguments,
in order, repeating the last one when the recording has no more; a function the recording never
called does not exist on the stand-in (as on an older binding), and a call with arguments never
recorded raises ``NVMLError_NotSupported`` and is listed in :attr:`ReplayNvml.misses`.
"""

from __future__ import annotations

import collections
import ctypes
import json
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Optional

FORMAT = "deepdive-nvml-calls/1"

#: Keys of a GPU reading whose value depends on the time between two samples (not replayed exactly).
RATE_KEYS = ("nvlink",)


class ReplayHandle:
    """A device handle or event set in a replay: compared by its recorded token."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"ReplayHandle({self.token!r})"


def _float(value: float) -> Any:
    return value if math.isfinite(value) else {"__float__": repr(value)}


class _Encoder:
    """Turns pynvml's answers and arguments into JSON values; pointers become stable tokens."""

    def __init__(self) -> None:
        self.tokens: dict[int, str] = {}

    def handle(self, pointer: Any) -> dict[str, str]:
        address = ctypes.cast(pointer, ctypes.c_void_p).value
        if address is None:
            return {"__handle__": "null"}
        if address not in self.tokens:
            self.tokens[address] = f"h{len(self.tokens)}"
        return {"__handle__": self.tokens[address]}

    def __call__(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return _float(value)
        if isinstance(value, ReplayHandle):
            return {"__handle__": value.token}
        if isinstance(value, bytes):
            return {"__bytes__": value.decode("utf-8", "replace")}
        if isinstance(value, (list, tuple, ctypes.Array)):
            return [self(v) for v in value]
        if isinstance(value, ctypes._Pointer):
            return self.handle(value)
        if isinstance(value, (ctypes.Structure, ctypes.Union)):
            fields = {name: self(getattr(value, name)) for name, *_ in value._fields_}
            return {"__struct__": type(value).__name__, "fields": fields}
        if isinstance(value, ctypes._SimpleCData):
            return self(value.value)
        if hasattr(value, "__dict__") and type(value).__name__ in ("nvmlFriendlyObject", "SimpleNamespace"):
            return {"__struct__": type(value).__name__, "fields": {k: self(v) for k, v in vars(value).items()}}
        return {"__repr__": repr(value)}


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__handle__" in value:
        return ReplayHandle(value["__handle__"])
    if "__struct__" in value:
        return SimpleNamespace(**{k: _decode(v) for k, v in value["fields"].items()})
    if "__bytes__" in value:
        return value["__bytes__"].encode("utf-8")
    if "__float__" in value:
        return float(value["__float__"])
    raise ValueError(f"NVML fixture value {value!r} cannot be replayed: record the fixture again")


def _key(fn: str, args: list[Any]) -> str:
    return json.dumps([fn, args], sort_keys=True)


class RecordingNvml:
    """The ``pynvml`` module, with every ``nvml*`` function call recorded in :attr:`calls`.

    Everything else (exception classes, constants) is the module's own, so code written against
    ``pynvml`` (``except nvml.NVMLError_NotSupported``) behaves exactly as with the module.
    """

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._encode = _Encoder()
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._nvml, name)
        if name.startswith("nvml") and callable(value) and not isinstance(value, type):
            return self._recorded(name, value)
        return value

    def _recorded(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            entry: dict[str, Any] = {"fn": name, "args": self._encode(list(args))}
            try:
                result = fn(*args)
            except self._nvml.NVMLError as exc:
                entry["error"] = int(exc.value)
                self.calls.append(entry)
                raise
            entry["result"] = self._encode(result)
            self.calls.append(entry)
            return result

        return call

    def fixture(self, readings: list[list[dict[str, Any]]], *, source: dict[str, Any],
                synthetic: bool = False) -> dict[str, Any]:
        """The recording as a fixture (the format in the module docstring)."""
        return {"format": FORMAT, "synthetic": synthetic, "source": source, "calls": list(self.calls),
                "readings": readings}


class ReplayNvml:
    """A stand-in for the ``pynvml`` module that answers from a recorded fixture.

    Args:
        fixture (dict): a fixture (:func:`load_fixture`).

    Attributes:
        misses (list[str]): calls the recording has no answer for (function and arguments).

    Raises:
        ValueError: the fixture is not in :data:`FORMAT`.
    """

    def __init__(self, fixture: dict[str, Any]) -> None:
        import pynvml

        if fixture.get("format") != FORMAT:
            raise ValueError(f"not an NVML fixture of format {FORMAT!r} (got {fixture.get('format')!r})")
        for name in dir(pynvml):
            if name.startswith(("NVMLError", "NVML_")):
                setattr(self, name, getattr(pynvml, name))
        self._pynvml = pynvml
        self._queues: dict[str, collections.deque[dict[str, Any]]] = collections.defaultdict(collections.deque)
        self._last: dict[str, dict[str, Any]] = {}
        for call in fixture["calls"]:
            self._queues[_key(call["fn"], call["args"])].append(call)
        self._functions = {call["fn"] for call in fixture["calls"]}
        self._encode = _Encoder()
        self.misses: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("nvml") and name in self.__dict__.get("_functions", ()):
            return lambda *args: self._answer(name, args)
        raise AttributeError(f"the recorded NVML binding has no {name}")

    def _answer(self, fn: str, args: tuple[Any, ...]) -> Any:
        key = _key(fn, self._encode(list(args)))
        queue = self._queues.get(key)
        if queue:
            entry = self._last[key] = queue.popleft()
        elif key in self._last:
            entry = self._last[key]
        else:
            self.misses.append(key)
            raise self._pynvml.NVMLError(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        if "error" in entry:
            raise self._pynvml.NVMLError(entry["error"])
        return _decode(entry["result"])

    def unused(self) -> list[str]:
        """Recorded calls no replayed call asked for (function and arguments)."""
        return [key for key, queue in self._queues.items() if queue and key not in self._last]


def load_fixture(path: str | Path) -> dict[str, Any]:
    """Read a fixture file. Raises ValueError when it is not one."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not an NVML fixture of format {FORMAT!r}")
    return data


def replay(fixture: dict[str, Any], samples: Optional[int] = None) -> tuple[list[list[dict[str, Any]]], ReplayNvml]:
    """Feed the recorded calls through :class:`~deepdive.telemetry.samplers.NvmlSampler`.

    Returns the sampler's readings (``samples`` of them, default as many as were recorded) and the
    stand-in module (for its :attr:`~ReplayNvml.misses`).

    Raises:
        ValueError: the sampler found no GPU in the recording (with the sampler's reason).
    """
    from deepdive.telemetry.samplers import NvmlSampler

    nvml = ReplayNvml(fixture)
    sampler = NvmlSampler(nvml)  # type: ignore[arg-type]
    if not sampler.available:
        raise ValueError(f"the recorded NVML gives no GPU: {sampler.reason}")
    try:
        readings = [sampler.sample() for _ in range(len(fixture["readings"]) if samples is None else samples)]
    finally:
        sampler.close()
    return readings, nvml


def differences(recorded: list[list[dict[str, Any]]], replayed: list[list[dict[str, Any]]]) -> list[str]:
    """Where a replay's readings differ from the recorded ones (empty: the same).

    Rates (:data:`RATE_KEYS`) depend on the time between samples: only whether they were measured
    is compared, not their values.
    """
    out = []
    if len(recorded) != len(replayed):
        return [f"{len(recorded)} samples recorded, {len(replayed)} replayed"]
    for i, (rec_gpus, rep_gpus) in enumerate(zip(recorded, replayed)):
        if len(rec_gpus) != len(rep_gpus):
            out.append(f"sample {i}: {len(rec_gpus)} GPUs recorded, {len(rep_gpus)} replayed")
            continue
        for rec, rep in zip(rec_gpus, rep_gpus):
            for key in sorted(set(rec) | set(rep)):
                a, b = rec.get(key, "<absent>"), rep.get(key, "<absent>")
                if key in RATE_KEYS:
                    a, b = _rate_shape(a), _rate_shape(b)
                if a != b:
                    out.append(f"sample {i} GPU {rec.get('index')}: {key} recorded {a!r}, replayed {b!r}")
    return out


def _rate_shape(value: Any) -> Any:
    """A rate reading with each measured number replaced by True (None stays None)."""
    if isinstance(value, dict):
        return {k: (True if isinstance(v, float) else v) for k, v in value.items()}
    return value
