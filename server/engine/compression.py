"""Gradient compression as DDP communication hooks, and the figures of the communication.

One dispatcher hook is registered on a ``torch.nn.parallel.DistributedDataParallel`` module; it runs
the algorithm chosen by :class:`GradCompression` (switchable at run time) and records, per step,
what :class:`CommStats` reports. Every algorithm works on gloo (CPU) and NCCL (GPU) alike:

- ``none``: plain averaging allreduce (instrumented).
- ``fp16`` / ``bf16``: the bucket is divided by the world size, cast, allreduced and cast back.
  Whether the backend can allreduce the dtype is probed once (a one-element allreduce); where it
  cannot, a ``ValueError`` names the backend and the alternative.
- ``powersgd``: rank-``r`` PowerSGD (Vogels et al., 2019) with error feedback and warm-started
  ``Q``; 1-D tensors (biases, norms) and matrices too small to gain are allreduced uncompressed.
- ``topk``: the ``ratio`` largest-magnitude entries of each bucket, with error feedback; values and
  int32 indices of a fixed ``k`` per rank are all-gathered and accumulated densely.

Why not torch's ``powerSGD_hook``: on gloo it hangs (a 3-layer MLP under
``torchrun --nproc_per_node=2`` hung 8 runs out of 8). It issues its second and third collectives
from ``Future.then`` callbacks, which run on the backend's worker thread, so the order in which the
collectives of different buckets are issued can differ between ranks, the likely reason. Here
every collective is issued from the hook itself, in bucket order, on every rank. Only the last collective of a bucket is left in flight
when the hook returns (so it overlaps the rest of backward); its ``then`` callback does local
arithmetic only and never issues a collective.

Error feedback keeps, per parameter (keyed by the parameter's name, so it survives DDP's bucket
rebuild after the first iteration), the part of the local gradient not yet sent; it is added to
the next gradient of that parameter, whatever the mode then is, so switching modes never drops it.
"""

from __future__ import annotations

import math
import threading
import time
import zlib
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.distributed as dist

__all__ = ["CommStats", "GradCompression", "decide_auto", "MODES"]

MODES = ("none", "fp16", "bf16", "powersgd", "topk")
"""The compression modes :class:`GradCompression` accepts."""

_EPS = 1e-8
_Q_SEED = 0x5EED


# --------------------------------------------------------------------------------------------
# Clocks: wall time on CPU, CUDA events on the GPU (NCCL work does not block the CPU)
# --------------------------------------------------------------------------------------------


class _WallClock:
    cuda = False

    def mark(self) -> float:
        return time.perf_counter()


class _CudaClock:
    cuda = True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event


# --------------------------------------------------------------------------------------------
# Interval arithmetic for the overlap figures
# --------------------------------------------------------------------------------------------


def _union(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(merged: Sequence[tuple[float, float]]) -> float:
    return sum(end - start for start, end in merged)


def _intersection(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    total = 0.0
    for s1, e1 in a:
        for s2, e2 in b:
            total += max(0.0, min(e1, e2) - max(s1, s2))
    return total


def _subtract(window: tuple[float, float], holes: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    pieces = [window]
    for hs, he in holes:
        nxt = []
        for s, e in pieces:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if hs > s:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        pieces = nxt
    return [(s, e) for s, e in pieces if e > s]


def split_comm_time(
    begin: float, last_hook: float, comms: Sequence[tuple[float, float, bool]]
) -> tuple[float, float, float]:
    """Splits one step's communication into hidden and exposed time.

    Args:
        begin (float): when backward started (seconds, any origin).
        last_hook (float): when the last bucket's hook was called; every gradient exists by then,
            so backward compute ends there.
        comms (Sequence[tuple[float, float, bool]]): ``(start, end, blocking)`` of each collective;
            ``blocking`` is True when the hook waited for it, i.e. backward compute stood still.

    Returns:
        tuple[float, float, float]: ``(comm_time, hidden, exposed)``: wall time with at least one
        collective in flight; the part of it during which backward compute could run (inside
        ``[begin, last_hook]`` and outside every blocking wait); the rest.
    """
    comm = _union([(s, e) for s, e, _ in comms])
    total = _length(comm)
    blocked = _union([(s, e) for s, e, blocking in comms if blocking])
    window = _subtract((begin, max(begin, last_hook)), blocked)
    hidden = min(total, _intersection(comm, window))
    return total, hidden, max(0.0, total - hidden)


# --------------------------------------------------------------------------------------------
# CommStats
# --------------------------------------------------------------------------------------------


class _Step:
    __slots__ = ("begin", "hooks", "comms", "bytes_uncompressed", "bytes_sent", "buckets", "mode", "warmup")

    def __init__(self, begin: Any) -> None:
        self.begin = begin
        self.hooks: list[Any] = []
        self.comms: list[tuple[Any, Any, bool]] = []
        self.bytes_uncompressed = 0
        self.bytes_sent = 0
        self.buckets = 0
        self.mode: Optional[str] = None
        self.warmup = False


class CommStats:
    """Per-step communication figures of a DDP module, filled in by :class:`GradCompression`'s hook.

    Call :meth:`begin_step` when backward starts and :meth:`end_step` after it returns; the hook
    records every bucket in between. Figures of one step (the keys :meth:`end_step` returns):

    - ``comm_bytes_uncompressed`` (int): bytes of the gradient buckets (what a plain allreduce
      would contribute).
    - ``comm_bytes_sent`` (int): payload this rank contributes to collectives (the tensors it
      passes to allreduce/all_gather); the bytes on the wire depend on the backend's algorithm
      (a ring allreduce moves ``2 (N-1)/N`` times this).
    - ``comm_time_s`` (float): wall time during which at least one of the step's collectives was
      in flight, from issue to completion (the union of the intervals, so collectives queued
      behind each other are not counted twice). It includes waiting for the slowest rank to
      reach the collective. On CUDA the times come from CUDA events on the streams, since NCCL
      work does not block the CPU.
    - ``comm_exposed_s`` (float): the part of ``comm_time_s`` that backward compute did not hide:
      communication after the last bucket's hook was called (all gradients exist by then; what is
      left is waiting), plus communication the hook waited for itself (PowerSGD's first
      allreduce), during which backward stood still.
    - ``comm_overlap`` (float): ``1 - comm_exposed_s / comm_time_s``, the share of communication
      hidden by backward (0.0 when nothing was communicated).
    - ``comm_buckets`` (int): hook calls (buckets) this step.
    - ``comm_mode`` (str): the mode the hook ran; ``comm_warmup`` (int) is 1 while PowerSGD runs
      its uncompressed warm-up steps.

    Attributes:
        steps (int): steps closed by :meth:`end_step`.
        last (dict | None): the figures of the last closed step.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock: Union[_WallClock, _CudaClock] = _WallClock()
        self._step: Optional[_Step] = None
        self._mode = "none"
        self.steps = 0
        self.last: Optional[dict[str, Any]] = None
        self._tot_uncompressed = 0
        self._tot_sent = 0
        self._tot_comm = 0.0
        self._tot_exposed = 0.0
        self._tot_buckets = 0

    def begin_step(self) -> None:
        """Starts a step: call it just before ``loss.backward()``."""
        with self._lock:
            self._step = _Step(self._clock.mark())

    def end_step(self) -> dict[str, Any]:
        """Closes the step (call it after backward returns) and returns its figures.

        Without a preceding :meth:`begin_step` the step starts at the first hook call. On CUDA
        this waits for the device to finish the step's queued work, to read the event times.

        Returns:
            dict[str, Any]: the keys listed in the class docstring.
        """
        with self._lock:
            step, self._step = self._step, None
        if step is None or not step.hooks:
            figures = self._figures(step, 0.0, 0.0, 0.0)
        else:
            comm, hidden, exposed = self._resolve(step)
            figures = self._figures(step, comm, hidden, exposed)
        self.steps += 1
        self._tot_uncompressed += figures["comm_bytes_uncompressed"]
        self._tot_sent += figures["comm_bytes_sent"]
        self._tot_comm += figures["comm_time_s"]
        self._tot_exposed += figures["comm_exposed_s"]
        self._tot_buckets += figures["comm_buckets"]
        self.last = figures
        return figures

    def totals(self) -> dict[str, Any]:
        """Running totals over every closed step.

        Returns:
            dict[str, Any]: ``steps``, ``bytes_uncompressed``, ``bytes_sent``, ``comm_time_s``,
            ``comm_exposed_s``, ``buckets``, ``overlap`` (hidden share of all communication) and
            ``compression_ratio`` (uncompressed / sent bytes; 1.0 before anything was sent).
        """
        comm = self._tot_comm
        return {
            "steps": self.steps,
            "bytes_uncompressed": self._tot_uncompressed,
            "bytes_sent": self._tot_sent,
            "comm_time_s": comm,
            "comm_exposed_s": self._tot_exposed,
            "buckets": self._tot_buckets,
            "overlap": (1.0 - self._tot_exposed / comm) if comm > 0 else 0.0,
            "compression_ratio": (self._tot_uncompressed / self._tot_sent) if self._tot_sent else 1.0,
        }

    # -- used by GradCompression's hook (any thread) ----------------------------------------

    def _use_clock(self, clock: Union[_WallClock, _CudaClock]) -> None:
        self._clock = clock

    def _current(self) -> _Step:
        if self._step is None:
            self._step = _Step(None)
        return self._step

    def _on_hook(self, bytes_uncompressed: int, mode: str, warmup: bool) -> None:
        mark = self._clock.mark()
        with self._lock:
            step = self._current()
            step.hooks.append(mark)
            step.buckets += 1
            step.bytes_uncompressed += bytes_uncompressed
            step.mode = mode
            step.warmup = step.warmup or warmup

    def _comm_begin(self) -> Any:
        return self._clock.mark()

    def _comm_end(self, start: Any, bytes_sent: int, *, blocking: bool) -> None:
        end = self._clock.mark()
        with self._lock:
            step = self._current()
            step.comms.append((start, end, blocking))
            step.bytes_sent += bytes_sent

    # -- internals ---------------------------------------------------------------------------

    def _resolve(self, step: _Step) -> tuple[float, float, float]:
        if self._clock.cuda:
            torch.cuda.synchronize(self._clock.device)
            origin = step.begin if step.begin is not None else step.hooks[0]

            def seconds(mark: Any) -> float:
                return origin.elapsed_time(mark) / 1e3

        else:
            origin_t = step.begin if step.begin is not None else step.hooks[0]

            def seconds(mark: Any) -> float:
                return mark - origin_t

        last_hook = max(seconds(m) for m in step.hooks)
        comms = [(seconds(s), seconds(e), blocking) for s, e, blocking in step.comms]
        return split_comm_time(0.0, last_hook, comms)

    def _figures(self, step: Optional[_Step], comm: float, hidden: float, exposed: float) -> dict[str, Any]:
        return {
            "comm_bytes_uncompressed": step.bytes_uncompressed if step else 0,
            "comm_bytes_sent": step.bytes_sent if step else 0,
            "comm_time_s": comm,
            "comm_exposed_s": exposed,
            "comm_overlap": (hidden / comm) if comm > 0 else 0.0,
            "comm_buckets": step.buckets if step else 0,
            "comm_mode": (step.mode if step and step.mode else self._mode),
            "comm_warmup": int(bool(step and step.warmup)),
        }


# --------------------------------------------------------------------------------------------
# PowerSGD arithmetic (pure functions, exercised directly by the tests)
# --------------------------------------------------------------------------------------------


def orthonormalize_(p: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Orthonormalises the columns of ``p`` in place (modified Gram-Schmidt).

    ``eps`` is added to every norm, so tiny or zero columns give small vectors, never NaNs.

    Args:
        p (torch.Tensor): an ``n x r`` float32 matrix.
        eps (float): added to each column norm.

    Returns:
        torch.Tensor: ``p``.
    """
    cols = p.shape[1]
    for i in range(cols):
        col = p[:, i : i + 1]
        col.div_(torch.linalg.vector_norm(col) + eps)
        if i + 1 < cols:
            rest = p[:, i + 1 :]
            rest.sub_(col * (col.t() @ rest))
    return p


def powersgd_p(m: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """First half of a PowerSGD round: ``P = M Q`` (``Q``'s columns normalised first).

    Args:
        m (torch.Tensor): ``n x m`` local gradient plus error.
        q (torch.Tensor): ``m x r``, identical on every rank.

    Returns:
        torch.Tensor: ``P`` (``n x r``), to be summed over ranks.
    """
    qn = q / (torch.linalg.vector_norm(q, dim=0, keepdim=True) + _EPS)
    return m @ qn


def powersgd_q(m: torch.Tensor, p_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Second half: orthonormalise the summed ``P`` and project: ``Q_local = Mᵀ P̂``.

    Args:
        m (torch.Tensor): ``n x m`` local gradient plus error.
        p_sum (torch.Tensor): ``P`` summed over ranks.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(P̂, Q_local)``; ``Q_local`` is to be summed over ranks.
    """
    p_hat = orthonormalize_(p_sum.clone())
    return p_hat, m.t() @ p_hat


def powersgd_finish(
    m: torch.Tensor,
    p_hat: torch.Tensor,
    q_local: torch.Tensor,
    q_sum: torch.Tensor,
    world: int = 1,
    out: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decompression and error feedback.

    Args:
        m (torch.Tensor): ``n x m`` local gradient plus error.
        p_hat (torch.Tensor): orthonormalised summed ``P``.
        q_local (torch.Tensor): this rank's ``Mᵀ P̂``.
        q_sum (torch.Tensor): ``Q`` summed over ranks.
        world (int): the number of ranks; the approximation is divided by it.
        out (torch.Tensor | None): ``n x m`` float32 tensor for the approximation; it may be ``m``
            itself (the error is computed first).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``(approx, error)``: ``P̂ Q_sumᵀ / world``, the average
        over ranks of the rank-r approximations, and ``M - P̂ Q_localᵀ``, what this rank's
        approximation left out. Summed over steps, the approximations plus the ranks' mean final
        error equal the mean summed gradient exactly.
    """
    error = torch.addmm(m, p_hat, q_local.t(), alpha=-1.0)
    approx = torch.mm(p_hat, q_sum.t(), out=out) if out is not None else p_hat @ q_sum.t()
    return approx.div_(world), error


def _initial_q(key: str, m: int, r: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(_Q_SEED ^ zlib.crc32(key.encode()))
    return torch.randn(m, r, generator=gen, dtype=torch.float32).to(device)


def _matrix_shape(t: torch.Tensor) -> tuple[int, int]:
    n = t.shape[0]
    return n, t.numel() // max(1, n)


def _mark_used(*tensors: torch.Tensor) -> None:
    # A tensor made on one stream and used on the current one (hook stream <-> the streams
    # ``Future.then`` callbacks run on): tell the caching allocator, so that its memory is not
    # handed out again before this stream's work on it is done. Nothing to do on CPU.
    for t in tensors:
        if t.is_cuda:
            t.record_stream(torch.cuda.current_stream(t.device))


# --------------------------------------------------------------------------------------------
# GradCompression
# --------------------------------------------------------------------------------------------


def topk_indices(a: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest entries of the 1-D ``a`` (exact, in no particular order).

    On CPU, for large tensors, a threshold estimated on a 1 % sample (at twice the share wanted)
    first narrows the candidates, and the exact top-k runs on those; when fewer than ``k`` pass,
    it falls back to a full ``torch.topk``. About 4x faster than ``torch.topk`` on 4 M entries.

    Args:
        a (torch.Tensor): 1-D values (magnitudes).
        k (int): how many, ``1 <= k <= a.numel()``.

    Returns:
        torch.Tensor: int64 indices.
    """
    n = a.numel()
    if a.is_cuda or n < 200_000 or 2 * k >= n // 2:
        return torch.topk(a, k, sorted=False).indices
    gen = torch.Generator(device="cpu").manual_seed(n)
    sample = a[torch.randint(0, n, (min(1_000_000, max(2048, n // 100)),), generator=gen)]
    threshold = torch.quantile(sample, 1.0 - 2.0 * k / n)
    candidates = (a >= threshold).nonzero().squeeze(1)
    if candidates.numel() < k:
        return torch.topk(a, k, sorted=False).indices
    return candidates[torch.topk(a[candidates], k, sorted=False).indices]


def _keep_if(ok: torch.Tensor, new: torch.Tensor, old: Optional[torch.Tensor]) -> torch.Tensor:
    """``new`` where the 0-d bool ``ok`` holds, else ``old`` (zeros when None). On CPU this
    branches; on the GPU it selects without waiting for the device."""
    if not new.is_cuda:
        if bool(ok):
            return new
        return old.view_as(new).to(new.dtype) if old is not None else torch.zeros_like(new)
    return torch.where(ok, new, old.view_as(new).to(new.dtype) if old is not None else torch.zeros_like(new))


class _PowerSGDState:
    __slots__ = ("q", "q0")

    def __init__(self, q: torch.Tensor) -> None:
        self.q = q
        self.q0 = q


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _check_options(mode: str, options: dict[str, Any]) -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"unknown gradient compression mode {mode!r}: use one of {', '.join(MODES)}")
    allowed = {"rank", "warmup_steps", "topk_ratio"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"unknown gradient compression option(s) {', '.join(sorted(unknown))}: "
            f"use {', '.join(sorted(allowed))}"
        )
    out = dict(options)
    if "rank" in out and (not isinstance(out["rank"], int) or out["rank"] < 1):
        raise ValueError(f"PowerSGD rank must be an integer >= 1, got {out['rank']!r}")
    if "warmup_steps" in out and (not isinstance(out["warmup_steps"], int) or out["warmup_steps"] < 0):
        raise ValueError(f"warmup_steps must be an integer >= 0, got {out['warmup_steps']!r}")
    if "topk_ratio" in out:
        ratio = out["topk_ratio"]
        if not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) <= 1.0:
            raise ValueError(f"topk_ratio must be in (0, 1], e.g. 0.01, got {ratio!r}")
        out["topk_ratio"] = float(ratio)
    return out


def check_allreduce_dtype(group: Any, device: torch.device, dtype: torch.dtype, mode: str) -> None:
    """Probes whether ``group`` can allreduce ``dtype`` (a one-element allreduce on every rank).

    Args:
        group (ProcessGroup): the process group.
        device (torch.device): where the gradients live.
        dtype (torch.dtype): the dtype to probe.
        mode (str): the compression mode that needs it (named in the error).

    Raises:
        ValueError: the backend cannot allreduce ``dtype`` (or sums it wrongly); the message names
            the backend and the alternative.
    """
    backend = dist.get_backend(group)
    probe = torch.ones(1, dtype=dtype, device=device)
    try:
        dist.all_reduce(probe, group=group)
        got = float(probe.float().item())
        problem = None if got == float(group.size()) else f"the sum came back as {got}, not {group.size()}"
    except (RuntimeError, ValueError, TypeError) as exc:
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}"
    if problem is not None:
        instead = "'powersgd' or 'none'" if mode == "fp16" else "'fp16' or 'powersgd'"
        raise ValueError(
            f"{mode} gradient compression needs an allreduce of {str(dtype).replace('torch.', '')}, "
            f"which the {backend!r} backend here cannot do ({problem}): use grad_compression={instead} instead"
        )


class GradCompression:
    """Gradient compression for a DDP module, switchable at run time, with :class:`CommStats`.

    Args:
        mode (str): one of ``none``, ``fp16``, ``bf16``, ``powersgd``, ``topk``.
        rank (int): PowerSGD rank ``r``.
        warmup_steps (int): PowerSGD runs this many uncompressed steps each time it is switched on
            (and never compresses during DDP's first iteration, after which DDP rebuilds buckets).
        topk_ratio (float): share of each bucket's entries top-k sends, in (0, 1].
        process_group (ProcessGroup | None): the group to reduce over; None for the default group.

    Attributes:
        stats (CommStats): the per-step figures.

    Raises:
        ValueError: an unknown mode or an invalid option.
    """

    def __init__(
        self,
        mode: str = "none",
        *,
        rank: int = 2,
        warmup_steps: int = 10,
        topk_ratio: float = 0.01,
        process_group: Any = None,
    ) -> None:
        self._options = _check_options(mode, {"rank": rank, "warmup_steps": warmup_steps, "topk_ratio": topk_ratio})
        self._mode = mode
        self._active = mode
        self._pending: Optional[str] = None
        self._group_arg = process_group
        self._group: Any = None
        self._world = 1
        self._device: Optional[torch.device] = None
        self._names: dict[int, str] = {}
        self._iteration = -1
        self._mode_since = 0
        self._residual: dict[str, torch.Tensor] = {}
        self._psgd: dict[str, _PowerSGDState] = {}
        self._probed: set[str] = set()
        self._lock = threading.Lock()
        self.stats = CommStats()
        self.stats._mode = mode

    @property
    def mode(self) -> str:
        """str: the current mode (a switch takes effect at the next backward)."""
        return self._mode

    @property
    def options(self) -> dict[str, Any]:
        """dict[str, Any]: ``rank``, ``warmup_steps`` and ``topk_ratio`` now in force."""
        return dict(self._options)

    def register(self, ddp_model: torch.nn.parallel.DistributedDataParallel) -> None:
        """Registers the dispatcher hook on ``ddp_model`` (once; it stays for the whole run).

        Every rank must call it at the same point: for ``fp16``/``bf16`` it probes the backend
        with a collective.

        Args:
            ddp_model (DistributedDataParallel): the wrapped model.

        Raises:
            TypeError: ``ddp_model`` is not a DistributedDataParallel module.
            RuntimeError: the hook is already registered, or no process group is initialised.
            ValueError: the backend cannot allreduce the dtype the mode needs.
        """
        if not isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
            raise TypeError(
                f"GradCompression.register needs a DistributedDataParallel module, got "
                f"{type(ddp_model).__name__}: wrap the model in DDP first"
            )
        if self._group is not None:
            raise RuntimeError("this GradCompression is already registered on a DDP module: make one per model")
        if not dist.is_initialized():
            raise RuntimeError("no process group: call torch.distributed.init_process_group before register()")
        group = self._group_arg if self._group_arg is not None else dist.group.WORLD
        first = next(iter(ddp_model.module.parameters()), None)
        self._device = first.device if first is not None else torch.device("cpu")
        self._group = group
        try:
            if self._mode in _DTYPES:
                self._probe(self._mode)
        except ValueError:
            self._group = None
            raise
        self._names = {id(p): name for name, p in ddp_model.module.named_parameters()}
        self._world = group.size()
        self.stats._use_clock(_CudaClock(self._device) if self._device.type == "cuda" else _WallClock())
        ddp_model.register_comm_hook(None, self._hook)

    def set_mode(self, mode: str, **options: Any) -> None:
        """Switches the algorithm; it takes effect at the next backward.

        All ranks must switch at the same step. Residuals of error feedback carry over.

        Args:
            mode (str): one of ``none``, ``fp16``, ``bf16``, ``powersgd``, ``topk``.
            **options: ``rank``, ``warmup_steps``, ``topk_ratio`` (as in the constructor); the
                ones not given keep their values.

        Raises:
            ValueError: an unknown mode or option, or a backend that cannot allreduce the dtype.
        """
        checked = _check_options(mode, options)
        if mode in _DTYPES and self._group is not None:
            self._probe(mode)
        with self._lock:
            if "rank" in checked and checked["rank"] != self._options["rank"]:
                self._psgd.clear()
            self._options.update(checked)
            self._mode = mode
            self._pending = mode
            self.stats._mode = mode

    # -- the hook ----------------------------------------------------------------------------

    def _probe(self, mode: str) -> None:
        if mode in self._probed:
            return
        assert self._device is not None
        check_allreduce_dtype(self._group, self._device, _DTYPES[mode], mode)
        self._probed.add(mode)

    def _hook(self, state, bucket):  # type: ignore[no-untyped-def]
        # No annotations: DDP compares them with dist.GradBucket, and this module's are strings.
        if bucket.index() == 0:
            self._iteration += 1
            with self._lock:
                if self._pending is not None:
                    if self._pending != self._active:
                        self._active = self._pending
                        self._mode_since = self._iteration
                    self._pending = None
        mode = self._active
        buf = bucket.buffer()
        warmup = mode == "powersgd" and (
            self._iteration < 1 or self._iteration - self._mode_since < self._options["warmup_steps"]
        )
        self.stats._on_hook(buf.numel() * buf.element_size(), mode, warmup)
        keys = [self._names.get(id(p), f"#{id(p)}") for p in bucket.parameters()]
        views = list(bucket.gradients())
        if mode == "powersgd" and not warmup:
            return self._powersgd(buf, keys, views)
        if mode == "topk":
            return self._topk(buf, keys, views)
        self._take_residuals(keys, views)
        return self._allreduce(buf, _DTYPES.get(mode))

    def _take_residuals(self, keys: list[str], views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        # Residuals are kept flat (1-D, float32), whichever mode made them.
        taken = {}
        for key, view in zip(keys, views):
            resid = self._residual.pop(key, None)
            if resid is not None and resid.numel() == view.numel():
                _mark_used(resid)
                view.add_(resid.view_as(view).to(view.dtype))
                taken[key] = resid
        return taken

    def _allreduce(self, buf: torch.Tensor, dtype: Optional[torch.dtype]) -> torch.futures.Future:
        # Divide first: the sum of N values each below max/N cannot overflow fp16.
        buf.div_(self._world)
        send = buf if dtype is None or dtype == buf.dtype else buf.to(dtype)
        nbytes = send.numel() * send.element_size()
        stats = self.stats
        start = stats._comm_begin()
        work = dist.all_reduce(send, group=self._group, async_op=True)

        def done(fut: torch.futures.Future) -> torch.Tensor:
            fut.value()
            stats._comm_end(start, nbytes, blocking=False)
            _mark_used(buf, send)
            if send is not buf:
                buf.copy_(send)
            return buf

        return work.get_future().then(done)

    def _topk(self, buf: torch.Tensor, keys: list[str], views: list[torch.Tensor]) -> torch.futures.Future:
        taken = self._take_residuals(keys, views)
        numel = buf.numel()
        k = min(numel, max(1, math.ceil(self._options["topk_ratio"] * numel)))
        m = buf.float()
        idx = topk_indices(m.abs(), k)
        payload = torch.empty(2 * k, dtype=torch.float32, device=buf.device)
        payload[:k] = m[idx]
        payload[k:].view(torch.int32).copy_(idx.to(torch.int32))
        # Error feedback: what was not sent stays, per parameter; a non-finite gradient (an fp16
        # overflow the loss scaler will skip) leaves the previous residual in place.
        resid = m.clone()
        resid[idx] = 0.0
        finite = torch.isfinite(m).all()
        base = buf.data_ptr()
        size = buf.element_size()
        for key, view in zip(keys, views):
            off = (view.data_ptr() - base) // size
            self._residual[key] = _keep_if(finite, resid[off : off + view.numel()], taken.get(key))
        gathered = [torch.empty_like(payload) for _ in range(self._world)]
        stats = self.stats
        world = self._world
        start = stats._comm_begin()
        work = dist.all_gather(gathered, payload, group=self._group, async_op=True)

        def done(fut: torch.futures.Future) -> torch.Tensor:
            fut.value()
            stats._comm_end(start, payload.numel() * payload.element_size(), blocking=False)
            _mark_used(buf, *gathered)
            acc = buf.zero_() if buf.dtype == torch.float32 else torch.zeros(numel, dtype=torch.float32, device=buf.device)
            for part in gathered:
                acc.index_add_(0, part[k:].view(torch.int32).long(), part[:k])
            acc.div_(world)
            if acc is not buf:
                buf.copy_(acc)
            return buf

        return work.get_future().then(done)

    def _powersgd(self, buf: torch.Tensor, keys: list[str], views: list[torch.Tensor]) -> torch.futures.Future:
        taken = self._take_residuals(keys, views)
        r_max = self._options["rank"]
        plain: list[torch.Tensor] = []
        mats: list[tuple[str, torch.Tensor, torch.Tensor, _PowerSGDState]] = []
        for key, view in zip(keys, views):
            n, m = _matrix_shape(view)
            r = min(r_max, n, m)
            if view.ndim < 2 or r * (n + m) >= n * m:
                plain.append(view)
                continue
            state = self._psgd.get(key)
            if state is None or state.q.shape != (m, r) or state.q.device != view.device:
                state = _PowerSGDState(_initial_q(key, m, r, view.device))
                self._psgd[key] = state
            _mark_used(state.q)
            mats.append((key, view, view.reshape(n, m).float(), state))
        if not mats:
            return self._allreduce(buf, None)
        world = self._world
        stats = self.stats
        ps = [powersgd_p(mm, st.q) for _, _, mm, st in mats]
        first = torch.cat([v.reshape(-1).float() for v in plain] + [p.reshape(-1) for p in ps])
        start = stats._comm_begin()
        dist.all_reduce(first, group=self._group, async_op=True).wait()
        stats._comm_end(start, first.numel() * first.element_size(), blocking=True)
        off = 0
        for view in plain:
            view.copy_(first[off : off + view.numel()].view_as(view).div(world))
            off += view.numel()
        p_hats, q_locals = [], []
        for (_, _, mm, _), p in zip(mats, ps):
            p_hat, q_local = powersgd_q(mm, first[off : off + p.numel()].view_as(p))
            off += p.numel()
            p_hats.append(p_hat)
            q_locals.append(q_local)
        second = torch.cat([q.reshape(-1) for q in q_locals])
        finite_p = torch.isfinite(first).all()
        start = stats._comm_begin()
        work = dist.all_reduce(second, group=self._group, async_op=True)
        residual = self._residual

        def done(fut: torch.futures.Future) -> torch.Tensor:
            fut.value()
            stats._comm_end(start, second.numel() * second.element_size(), blocking=False)
            # The decision uses reduced tensors only, so it is the same on every rank.
            _mark_used(buf, second, finite_p, *p_hats, *q_locals, *(mm for _, _, mm, _ in mats))
            ok = finite_p & torch.isfinite(second).all()
            qoff = 0
            for (key, view, mm, state), p_hat, q_local in zip(mats, p_hats, q_locals):
                q_sum = second[qoff : qoff + q_local.numel()].view_as(q_local)
                qoff += q_local.numel()
                in_place = mm.data_ptr() == view.data_ptr()  # a float32 bucket: write into it
                approx, error = powersgd_finish(mm, p_hat, q_local, q_sum, world, out=mm if in_place else None)
                if not in_place:
                    view.copy_(approx.view_as(view))
                residual[key] = _keep_if(ok, error.reshape(-1), taken.get(key))
                # A zero Q (an all-zero gradient) would stay zero forever: restart from Q0 then.
                nonzero = torch.linalg.vector_norm(q_sum) > _EPS
                state.q = _keep_if(ok, _keep_if(nonzero, q_sum.clone(), state.q0), state.q)
            return buf

        return work.get_future().then(done)


# --------------------------------------------------------------------------------------------
# The "auto" decision
# --------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 1000:
        return f"{seconds:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def decide_auto(
    stats_per_rank: Union[list[dict[str, Any]], dict[str, Any]],
    *,
    threshold: float = 0.2,
    min_bytes: int = 65536,
    trial: Optional[Union[list[dict[str, Any]], dict[str, Any]]] = None,
) -> tuple[str, str]:
    """Chooses ``grad_compression`` from the figures of the first measured steps.

    PowerSGD is chosen only when the job is bandwidth-bound: communication not hidden by backward
    above ``threshold`` of the step time, over a network (processes that all run on one host talk
    over loopback or shared memory, which no compression speeds up), with enough bytes per step
    that sending fewer of them shortens it (below ``min_bytes`` the cost is latency, to which
    PowerSGD's second round adds). Given ``trial`` (figures of a few steps run with PowerSGD after
    it was chosen), PowerSGD stays on only if it made the step at least 5 % shorter.

    Args:
        stats_per_rank (list[dict] | dict): one dict per rank (averaged here) or one averaged dict,
            with ``step_time_s``, ``comm_time_s``, ``comm_exposed_s``, ``comm_bytes_uncompressed``
            (means per step of uncompressed steps) and optionally ``backend`` and ``link``
            (:func:`deepdive.engine.topology.describe_topology`'s ``link``); ``world_size`` is
            required in a single dict and defaults to the list's length.
        threshold (float): exposed share of the step above which the job counts as bandwidth-bound.
        min_bytes (int): uncompressed bytes per step below which communication is latency-bound.
        trial (list[dict] | dict | None): ``step_time_s`` (per rank or averaged) measured with
            PowerSGD on, after its warm-up.

    Returns:
        tuple[str, str]: ``(mode, reason)``; mode is ``"powersgd"`` or ``"none"``, and the reason
        names the figures.

    Raises:
        ValueError: missing figures or a non-positive step time.
    """
    rows = [stats_per_rank] if isinstance(stats_per_rank, dict) else list(stats_per_rank)
    if not rows:
        raise ValueError("decide_auto needs the figures of at least one rank")
    needed = ("step_time_s", "comm_time_s", "comm_exposed_s", "comm_bytes_uncompressed")
    for row in rows:
        missing = [key for key in needed if key not in row]
        if missing:
            raise ValueError(
                f"decide_auto: figures lack {', '.join(missing)}: pass CommStats figures with step_time_s"
            )
    if isinstance(stats_per_rank, dict) and "world_size" not in stats_per_rank:
        raise ValueError("decide_auto: a single dict of figures needs world_size (or pass one dict per rank)")
    world = int(rows[0].get("world_size", len(rows)))
    if world <= 1:
        return "none", "single process: no gradient communication; compression off"

    def mean(key: str, of: list[dict[str, Any]]) -> float:
        return sum(float(row[key]) for row in of) / len(of)

    step, comm, exposed, nbytes = (mean(k, rows) for k in needed)
    if step <= 0:
        raise ValueError(f"decide_auto: step_time_s must be > 0, got {step}: measure at least one step")
    backend = rows[0].get("backend", "?")
    link = rows[0].get("link")
    share = exposed / step
    evidence = (
        f"{_ms(exposed)} of {_ms(step)} exposed, {_ms(comm)} in collectives, "
        f"{_bytes(nbytes)}/step, {backend}, {world} processes"
    )
    if share <= threshold:
        return "none", f"communication {share:.0%} of the step ({evidence}): not bandwidth-bound; compression off"
    if link == "loopback":
        return "none", (
            f"exposed communication {share:.0%} of the step ({evidence}), but every process is on this "
            f"host (loopback): no network bandwidth to save; compression off"
        )
    if nbytes < min_bytes:
        return "none", (
            f"exposed communication {share:.0%} of the step ({evidence}) but only {_bytes(nbytes)} per step: "
            f"latency-bound, compression would not shorten it; compression off"
        )
    if trial is None:
        return "powersgd", f"exposed communication {share:.0%} of the step ({evidence}): bandwidth-bound; PowerSGD on"
    trial_rows = [trial] if isinstance(trial, dict) else list(trial)
    if not trial_rows or any("step_time_s" not in row for row in trial_rows):
        raise ValueError("decide_auto: trial figures need step_time_s")
    with_psgd = mean("step_time_s", trial_rows)
    gain = 1.0 - with_psgd / step
    if gain >= 0.05:
        return "powersgd", (
            f"exposed communication {share:.0%} of the step ({evidence}); with PowerSGD the step took "
            f"{_ms(with_psgd)} instead of {_ms(step)} ({gain:.0%} shorter): PowerSGD on"
        )
    return "none", (
        f"exposed communication {share:.0%} of the step ({evidence}), but with PowerSGD the step took "
        f"{_ms(with_psgd)} instead of {_ms(step)}: no gain; compression off"
    )
