"""The GPUs a study may use, as ``CUDA_VISIBLE_DEVICES`` names them, and what one process holds on its GPU.

Why a module of its own: ``CUDA_VISIBLE_DEVICES`` names GPUs by index (``0,1``), by UUID as
``nvidia-smi -L`` prints it (``GPU-8932f937-d72c-4106-c12f-20bd9faed9f6``), by any prefix of a UUID
that names one GPU only (``GPU-8932f937``), or names MIG instances (``MIG-<uuid>``, or the older
``MIG-GPU-<gpu uuid>/<gpu instance>/<compute instance>``). Schedulers (Slurm, Kubernetes' device
plugin, MPS set-ups) often write UUIDs. ``--pack`` needs each named GPU's memory, and NVML reads it
through a handle, not through the name: :func:`visible_gpus` resolves every entry to its NVML device
(the same rules CUDA applies: an index is NVML's, a UUID prefix must be unique, ``-1`` or an empty
entry hides what follows), and says in one line (:class:`~deepdive.tune.errors.TuneError`) when an
entry names no GPU, names one ambiguously, or names one twice, instead of a worker silently seeing
no GPU. Each worker gets its entry as written (:attr:`VisibleGpu.entry`), so its CUDA sees the same GPU.

:func:`process_gpu_mib` is what one process holds on its GPU as NVML accounts it (the CUDA context,
the kernels loaded into it, the libraries' own buffers, and torch's caching allocator), read by a
trial worker after each trial so that ``--pack`` counts the context as well as the allocator's peak.

``nvml`` arguments take the ``pynvml`` module (default) or a stand-in with the same functions.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Optional

import attrs

from deepdive.tune.errors import TuneError

MIB = 2**20


@attrs.frozen
class VisibleGpu:
    """One ``CUDA_VISIBLE_DEVICES`` entry and the device NVML says it names.

    Attributes:
        entry (str): the entry as written: what a worker's ``CUDA_VISIBLE_DEVICES`` gets.
        uuid (str | None): NVML's UUID of the device (``GPU-…`` or ``MIG-…``); None without NVML.
        name (str | None): the product name (``NVIDIA H100 80GB HBM3``); None without NVML.
        total_mib (float | None): its memory (a MIG instance's own share); None without NVML.
        index (int | None): NVML's index of the GPU (the parent's, for a MIG instance).
        mig (bool): a MIG instance rather than a whole GPU.
    """

    entry: str
    uuid: Optional[str] = None
    name: Optional[str] = None
    total_mib: Optional[float] = None
    index: Optional[int] = None
    mig: bool = False

    @property
    def label(self) -> str:
        """How messages name it: ``GPU 0`` for an index, the UUID's first 12 characters otherwise."""
        return gpu_label(self.entry)


def gpu_label(entry: str) -> str:
    """A ``CUDA_VISIBLE_DEVICES`` entry as messages show it: ``GPU 0``, ``GPU-8932f937…``, ``MIG-1a2b3c4d…``,
    ``MIG-GPU-5c1e0b2d…/7/0`` (the older MIG form keeps its instance numbers)."""
    if entry.isdigit():
        return f"GPU {entry}"
    head, _, instance = entry.partition("/")
    if instance:
        return (head if len(head) <= 16 else head[:16] + "…") + "/" + instance
    return entry if len(entry) <= 12 else entry[:12] + "…"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_visible(value: str) -> list[str]:
    """``CUDA_VISIBLE_DEVICES``'s entries up to the first one that hides the rest (``-1``, an empty entry).

    CUDA reads the list in order and stops at the first invalid entry; ``-1`` (or ``""``) is the
    conventional way to hide every GPU. Entries are kept as written (stripped of spaces)."""
    entries: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def _nvml() -> tuple[Optional[ModuleType], Optional[str]]:
    from deepdive.telemetry.nvml import nvml_init

    return nvml_init()


def _devices(nvml: Any) -> list[VisibleGpu]:
    """Every GPU NVML sees, and every MIG instance of a GPU in MIG mode (``entry`` is the UUID)."""
    found: list[VisibleGpu] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        found.append(VisibleGpu(uuid, uuid, _text(nvml.nvmlDeviceGetName(handle)),
                                nvml.nvmlDeviceGetMemoryInfo(handle).total / MIB, index))
        for mig in _mig_handles(nvml, handle):
            mig_uuid = _text(nvml.nvmlDeviceGetUUID(mig))
            try:
                legacy = (f"MIG-{uuid}/{int(nvml.nvmlDeviceGetGpuInstanceId(mig))}/"
                          f"{int(nvml.nvmlDeviceGetComputeInstanceId(mig))}")
            except nvml.NVMLError:
                legacy = None
            found.append(VisibleGpu(legacy or mig_uuid, mig_uuid, _text(nvml.nvmlDeviceGetName(mig)),
                                    nvml.nvmlDeviceGetMemoryInfo(mig).total / MIB, index, mig=True))
    return found


def _mig_handles(nvml: Any, handle: Any) -> list[Any]:
    """The MIG instances of a GPU in MIG mode (none otherwise, or where NVML cannot tell)."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except (nvml.NVMLError, AttributeError):
        return []
    if current != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    handles = []
    for i in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            handles.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
        except nvml.NVMLError:  # NotFound: no instance in that slot
            continue
    return handles


def _listing(devices: list[VisibleGpu]) -> str:
    shown = [f"{d.index}: {d.uuid} ({d.name})" for d in devices if not d.mig][:4]
    more = sum(1 for d in devices if not d.mig) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def resolve(entry: str, devices: list[VisibleGpu], value: str) -> VisibleGpu:
    """The device ``entry`` names among ``devices`` (from NVML), by CUDA's rules.

    Raises:
        TuneError: the entry names no device, or is the start of several UUIDs.
    """
    where = f"CUDA_VISIBLE_DEVICES={value!r}: {entry!r}"
    if entry.isdigit():
        whole = [d for d in devices if not d.mig]
        index = int(entry)
        if index < len(whole):
            return attrs.evolve(whole[index], entry=entry)
        raise TuneError(f"{where} matches no GPU: this machine has {len(whole)} (index 0 to {len(whole) - 1}; "
                        f"{_listing(devices)}); name GPUs by index or UUID (`nvidia-smi -L` lists them)")
    if entry.startswith("MIG-GPU-"):  # the older MIG form: MIG-GPU-<uuid>/<gpu instance>/<compute instance>
        matches = [d for d in devices if d.mig and d.entry == entry]
    elif entry.startswith(("GPU-", "MIG-")):
        matches = [d for d in devices if d.uuid is not None and d.uuid.startswith(entry)]
    else:
        raise TuneError(f"{where} is neither a GPU index nor a UUID (GPU-… or MIG-…, as `nvidia-smi -L` prints "
                        "them): CUDA would show no GPU from there on")
    if len(matches) == 1:
        return attrs.evolve(matches[0], entry=entry)
    if not matches:
        raise TuneError(f"{where} matches no GPU on this machine ({_listing(devices) or 'NVML lists none'}); "
                        "give an index, a whole UUID or a prefix of one (`nvidia-smi -L` lists them)")
    raise TuneError(f"{where} is the start of {len(matches)} UUIDs ({', '.join(str(d.uuid) for d in matches[:3])}): "
                    "give enough of the UUID to name one GPU")


def visible_gpus(value: Optional[str] = None, nvml: Any = None) -> list[VisibleGpu]:
    """The GPUs a study may use, one per entry of ``CUDA_VISIBLE_DEVICES`` (``value``; default the environment).

    Unset: every GPU NVML sees, by index. Set: its entries resolved through NVML (:func:`resolve`);
    where NVML cannot be read (no driver) the entries are kept as written, unresolved (``uuid`` None),
    since nothing can check them (an entry that is neither an index nor a UUID is still refused).

    Args:
        value: a ``CUDA_VISIBLE_DEVICES`` value; None reads the environment (unset: every GPU).
        nvml: ``pynvml`` or a stand-in, not yet initialised (this call starts and shuts it down).

    Raises:
        TuneError: an entry names no GPU, is ambiguous, or two entries name the same GPU.
    """
    if value is None:
        value = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = parse_visible(value) if value is not None else None
    if entries is not None and not entries:
        return []
    from deepdive.telemetry.nvml import nvml_init

    nvml, _reason = nvml_init(nvml)
    if nvml is None:  # no NVML here (no driver): nothing to resolve against
        for entry in entries or []:
            if not entry.isdigit() and not entry.startswith(("GPU-", "MIG-")):
                resolve(entry, [], value or "")  # raises: neither an index nor a UUID
        return [VisibleGpu(entry) for entry in entries or []]
    try:
        devices = _devices(nvml)
    except nvml.NVMLError:  # NVML started but cannot list: as without NVML
        return [VisibleGpu(entry) for entry in entries or []]
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
    if entries is None:
        return [attrs.evolve(d, entry=str(d.index)) for d in devices if not d.mig]
    resolved: list[VisibleGpu] = []
    for entry in entries:
        gpu = resolve(entry, devices, value or "")
        twice = next((g for g in resolved if g.uuid == gpu.uuid), None)
        if twice is not None:
            raise TuneError(f"CUDA_VISIBLE_DEVICES={value!r} names {gpu.uuid} twice ({twice.entry!r} and {entry!r}), "
                            "and CUDA then shows no GPU at all: list each GPU once")
        resolved.append(gpu)
    return resolved


# ---------------------------------------------------------------------------------------------
# One process's memory on its GPU (read in a trial worker)
# ---------------------------------------------------------------------------------------------

_WORKER_NVML: list[Any] = []  # a worker keeps NVML open for its lifetime: [module] or [None, reason]


def _worker_nvml() -> tuple[Any, Optional[str]]:
    if not _WORKER_NVML:
        nvml, reason = _nvml()
        _WORKER_NVML[:] = [nvml, reason]
    return _WORKER_NVML[0], _WORKER_NVML[1]


def process_gpu_mib(pid: int, nvml: Any = None) -> tuple[Optional[float], Optional[str]]:
    """What process ``pid`` holds on the GPUs, as NVML accounts it (MiB), or ``(None, why not)``.

    NVML's per-process ``usedGpuMemory`` covers everything the process holds on the device: its
    CUDA context, the kernels loaded into it, cuBLAS/cuDNN's own memory and torch's caching
    allocator. It is unknown where NVML lists no process with this pid (in a container NVML reports
    the host's pids) or reports no size (a MIG instance, read without privileges).

    Args:
        pid: the process (a trial worker passes its own).
        nvml: ``pynvml`` or a stand-in, already initialised; None: this process's NVML, opened once.
    """
    if nvml is None:
        nvml, reason = _worker_nvml()
        if nvml is None:
            return None, reason
    total = 0
    seen = False
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for h in [handle, *_mig_handles(nvml, handle)]:
                try:
                    procs = nvml.nvmlDeviceGetComputeRunningProcesses(h)
                except nvml.NVMLError:
                    continue
                for p in procs:
                    if int(p.pid) != pid:
                        continue
                    used = getattr(p, "usedGpuMemory", None)
                    if used is None:
                        return None, "NVML gives no memory size for this process (MIG without privileges?)"
                    total += int(used)
                    seen = True
                if seen:
                    break  # a MIG instance's processes also appear on its parent: count them once
    except nvml.NVMLError as exc:
        return None, f"NVML could not list the GPU's processes: {exc}"
    if not seen:
        return None, f"NVML lists no GPU process with this pid ({pid}; in a container NVML shows the host's pids)"
    return total / MIB, None
