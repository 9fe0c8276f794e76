"""The profiler's events, read straight from its raw results, on one clock with the line tracer.

Why not ``prof.events()``: in torch 2.13 it decodes every event's name, and the Python tracer
sometimes records a frame whose name is no longer valid UTF-8 (seen with ``record_shapes=True`` and
``with_stack=True`` while a module is imported during profiling): ``prof.events()`` then raises
``UnicodeDecodeError`` and none of the run can be read. Here each raw ``KinetoEvent`` is read on its
own and one whose name cannot be decoded is skipped and counted. It is also much faster than building
``FunctionEvent`` trees we do not use.

Step boundaries and the user's line changes are zero-length spans recorded into the same profile
(``deepdive::step``, ``deepdive::line#K``), so everything is on the profiler's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from deepdive.diagnose.measure.lines import LINE_PREFIX

MARKER = "deepdive::step"
"""The name of the zero-length span recorded at each step boundary."""

RUNTIME_SYNC = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
RUNTIME_MEMCPY = ("cudaMemcpy", "cudaMemcpyAsync", "cudaMemcpy2D", "cudaMemcpy2DAsync", "cudaMemcpyPeer",
                  "cudaMemcpyPeerAsync")


@dataclass(slots=True)
class Span:
    """One profiler event: a name, an interval on the profiler's clock (ns) and where it came from."""

    name: str
    start: int
    end: int
    tid: int
    """The profiler's thread id (ops: the RecordFunction thread number; CUDA runtime calls: the system tid)."""
    kind: str
    """``op`` (an operator or record_function span on the CPU), ``runtime`` (a CUDA runtime call),
    ``device`` (work on the GPU), ``marker`` (a step boundary), ``other``."""
    correlation: int = 0
    linked: int = 0
    children: list["Span"] = field(default_factory=list)
    memcpy: bool = False
    """A CUDA memcpy was issued from inside this op (linked runtime call)."""
    sync: bool = False
    """The host waited on the GPU inside this op (linked synchronize runtime call)."""


@dataclass
class Trace:
    """Everything read from one profile."""

    spans: list[Span]
    markers: list[Span]
    """The step boundaries, in time order."""
    lines: list[tuple[int, str]]
    """The line stamps: (start, name)."""
    unreadable: int
    """Events skipped because their name could not be decoded."""


def _kind(activity: str, device: str, python: bool, name: str) -> str:
    if python:
        return "python"
    if name == MARKER:
        return "marker"
    if activity in ("cpu_op", "user_annotation", "python_function") or (activity == "" and device == "CPU"):
        return "op"
    if activity in ("cuda_runtime", "cuda_driver", "xpu_runtime", "privateuse1_runtime"):
        return "runtime"
    if device != "CPU" or activity in ("kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation"):
        return "device"
    return "other"


def read(raw_events: Iterable[Any]) -> Trace:
    """The spans of a ``torch.autograd._ProfilerResult.events()`` list."""
    spans: list[Span] = []
    markers: list[Span] = []
    lines: list[tuple[int, str]] = []
    unreadable = 0
    names: dict[str, str] = {}  # one string per distinct name: a profile repeats a few hundred names
    for ev in raw_events:
        try:
            name = ev.name()
            name = names.setdefault(name, name)
        except UnicodeDecodeError:
            unreadable += 1
            continue
        if ev.is_async():
            continue
        if name.startswith(LINE_PREFIX):
            lines.append((int(ev.start_ns()), name))
            continue
        device = str(ev.device_type()).rsplit(".", 1)[-1]
        activity = str(getattr(ev, "activity_type", lambda: "")())
        kind = _kind(activity, device, bool(ev.is_python_function()), name)
        if kind in ("python", "other"):
            continue
        start = int(ev.start_ns())
        span = Span(name=name, start=start, end=start + max(0, int(ev.duration_ns())), tid=int(ev.start_thread_id()),
                    kind=kind, correlation=int(ev.correlation_id()), linked=int(ev.linked_correlation_id()))
        (markers if kind == "marker" else spans).append(span)
    markers.sort(key=lambda m: m.start)
    return Trace(spans=spans, markers=markers, lines=lines, unreadable=unreadable)


def link_runtime(spans: list[Span]) -> None:
    """Mark each op from which a CUDA memcpy or synchronize was issued (runtime calls are linked to the op
    that was running by correlation id)."""
    by_corr: dict[int, Span] = {s.correlation: s for s in spans if s.kind == "op" and s.correlation}
    for s in spans:
        if s.kind != "runtime" or not s.linked:
            continue
        op: Optional[Span] = by_corr.get(s.linked)
        if op is None:
            continue
        if s.name.startswith(RUNTIME_SYNC):
            op.sync = True
        elif s.name.startswith(RUNTIME_MEMCPY):
            op.memcpy = True
