"""Where the processes of a job run and how they are connected.

:func:`describe_topology` reads the torchrun environment (nodes, processes), the process group
(backend), and the GPUs' interconnect from NVML (NVLink link states, PCIe generation and width) and
``nvidia-smi topo -m`` where those exist; where they do not, it says exactly why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Optional

import torch.distributed as dist

from deepdive.netutil import is_loopback

__all__ = ["describe_topology"]



def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _nvml_gpus() -> tuple[list[dict[str, Any]], Optional[str]]:
    """GPUs with their links, or ``([], reason)``."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return [], "no NVIDIA GPU: NVML library not found (libnvidia-ml.so is not installed; no NVIDIA driver)"
    except pynvml.NVMLError_DriverNotLoaded:
        return [], "no NVIDIA GPU: the NVIDIA driver is not loaded"
    except pynvml.NVMLError as exc:
        return [], f"NVML could not start: {exc}"
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpu: dict[str, Any] = {"index": index, "name": _text(pynvml.nvmlDeviceGetName(handle))}
            active = 0
            nvlink_reason = None
            for link in range(getattr(pynvml, "NVML_NVLINK_MAX_LINKS", 18)):
                try:
                    if pynvml.nvmlDeviceGetNvLinkState(handle, link) == pynvml.NVML_FEATURE_ENABLED:
                        active += 1
                except pynvml.NVMLError_NotSupported:
                    nvlink_reason = "NVLink not supported by this GPU"
                    break
                except pynvml.NVMLError_InvalidArgument:
                    break
                except pynvml.NVMLError as exc:
                    nvlink_reason = f"NVLink state unreadable: {exc}"
                    break
            gpu["nvlink_active_links"] = active
            if nvlink_reason:
                gpu["nvlink_reason"] = nvlink_reason
            try:
                gpu["pcie_gen"] = int(pynvml.nvmlDeviceGetCurrPcieLinkGeneration(handle))
                gpu["pcie_width"] = int(pynvml.nvmlDeviceGetCurrPcieLinkWidth(handle))
            except pynvml.NVMLError as exc:
                gpu["pcie_reason"] = f"PCIe link unreadable: {exc}"
            gpus.append(gpu)
        if not gpus:
            return [], "NVIDIA driver present but it reports no GPU device"
        return gpus, None
    except pynvml.NVMLError as exc:
        return [], f"NVML query failed: {exc}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _nvidia_smi_topo() -> tuple[Optional[str], Optional[str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi not found on PATH"
    try:
        proc = subprocess.run([exe, "topo", "-m"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi topo -m failed: {exc}"
    if proc.returncode != 0:
        first = (proc.stderr or proc.stdout).strip().splitlines()
        return None, f"nvidia-smi topo -m exited {proc.returncode}: {first[0] if first else 'no output'}"
    return proc.stdout.rstrip(), None


def _interconnect(gpus: list[dict[str, Any]]) -> Optional[str]:
    if not gpus:
        return None
    if any(g.get("nvlink_active_links", 0) > 0 for g in gpus):
        return "NVLink"
    gen, width = gpus[0].get("pcie_gen"), gpus[0].get("pcie_width")
    return f"PCIe Gen{gen} x{width}" if gen and width else "PCIe"


def _count(n: Optional[int], one: str, many: str) -> str:
    return f"{'?' if n is None else n} {one if n == 1 else many}"


def describe_topology(device: Optional[str] = None) -> dict[str, Any]:
    """Nodes, processes, backend, device and GPU interconnect of this job, with a one-line summary.

    Works before or after ``init_process_group``. Nodes come from torchrun's environment
    (``GROUP_WORLD_SIZE``, else ``NNODES``, else ``WORLD_SIZE / LOCAL_WORLD_SIZE``, else 1 when
    ``MASTER_ADDR`` is a loopback address); processes from the process group, else ``WORLD_SIZE``.
    The link between the processes is ``loopback`` when they all run on one node (or ``MASTER_ADDR``
    is loopback), ``network`` across nodes; on GPUs within a node it is the GPU interconnect.

    Args:
        device (str | None): ``cpu`` or ``cuda`` (the device the job trains on); None: ``cuda`` for
            an NCCL group, ``cpu`` for gloo, else ``cuda`` when torch sees a GPU.

    Returns:
        dict[str, Any]: ``nodes`` (int | None), ``processes``, ``local_processes``, ``backend``
        (str | None), ``device`` (``cpu``/``cuda``), ``device_name``, ``master_addr``, ``link``,
        ``gpus`` (NVML: name, active NVLink links, PCIe generation and width), ``interconnect``
        (``NVLink``, ``PCIe GenN xW`` or None), ``interconnect_reason`` (why there is none),
        ``nvidia_smi_topo`` (the matrix text or None), ``nvidia_smi_reason``, and ``summary``, e.g.
        ``"CPU, gloo, loopback (1 node, 2 processes)"``.
    """
    initialized = dist.is_available() and dist.is_initialized()
    backend = str(dist.get_backend()) if initialized else None
    processes = dist.get_world_size() if initialized else (_env_int("WORLD_SIZE") or 1)
    local = _env_int("LOCAL_WORLD_SIZE")
    master = os.environ.get("MASTER_ADDR")
    nodes = _env_int("GROUP_WORLD_SIZE") or _env_int("NNODES")
    if nodes is None and local:
        nodes = max(1, processes // local)
    if nodes is None and (processes == 1 or is_loopback(master)):
        nodes = 1
    if local is None and nodes == 1:
        local = processes

    if device is None:
        if backend is not None:
            device = "cuda" if "nccl" in backend else "cpu"
        else:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
    device = "cuda" if str(device).startswith("cuda") else "cpu"

    gpus, nvml_reason = _nvml_gpus()
    interconnect = _interconnect(gpus)
    topo, topo_reason = _nvidia_smi_topo()
    if device == "cuda":
        device_name = gpus[0]["name"] if gpus else "GPU"
    else:
        device_name = "CPU"

    if processes <= 1:
        link = "single process"
    elif nodes == 1 or (nodes is None and is_loopback(master)):
        link = (interconnect or "GPU link unknown") if device == "cuda" else "loopback"
    elif device == "cuda":
        link = f"{interconnect or 'GPU link unknown'} within nodes, network between nodes"
    else:
        link = "network"

    summary = (
        f"{device_name}, {backend or 'no process group'}, {link} "
        f"({_count(nodes, 'node', 'nodes')}, {_count(processes, 'process', 'processes')})"
    )
    return {
        "nodes": nodes,
        "processes": processes,
        "local_processes": local,
        "backend": backend,
        "device": device,
        "device_name": device_name,
        "master_addr": master,
        "link": link,
        "gpus": gpus,
        "interconnect": interconnect,
        "interconnect_reason": nvml_reason,
        "nvidia_smi_topo": topo,
        "nvidia_smi_reason": topo_reason,
        "summary": summary,
    }
