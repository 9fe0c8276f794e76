"""Model splitting: a model larger than one device's memory budget placed across GPUs, the CPU and disk.

The planning and the placing are accelerate's (``accelerate.infer_auto_device_map`` and
``accelerate.dispatch_model``), not ours: :func:`plan` measures the bytes of every submodule's
parameters and buffers (``accelerate.utils.compute_module_sizes``) and lets accelerate fill the devices
in order — GPUs by index, then the CPU, then disk — each up to its budget, keeping room on the first
GPU (or the CPU when there is no GPU) for the largest layer an offloaded layer needs while it runs.
:func:`place` attaches accelerate's hooks: each layer runs on its GPU (inputs moved to it), layers
planned for the CPU or disk are loaded onto the execution device only for their forward.

Budgets are written ``0=10GiB,1=10GiB,cpu=30GiB,disk`` (:func:`parse_budgets`): a GPU index or
``cpu`` with a size (``GiB``/``MiB``/``KiB``, ``GB``/``MB``/``KB`` or bytes), and ``disk`` (no size)
to allow offloading the rest to disk. Budgets that cannot hold the model (something would go to disk
and disk was not allowed) are refused with the shortfall.

For a served export folder, :func:`split_folder` (``deepdive deploy split FOLDER --max-memory ...``)
plans the eager model, writes the disk part once into ``FOLDER/split_offload/`` (accelerate's
offload format, written into a temporary folder and renamed), checks the placed model against eager
on the example inputs and records the form ``split`` in ``deploy.json``::

    "split": {"file": "model.pt", "max_abs_diff": 0.0, "budgets": {"cpu": 20000000, "disk": null},
              "device_map": {"layers.0": "cpu", "layers.5": "disk", ...},
              "bytes": {"cpu": 16000000, "disk": 8400000}, "total_bytes": 24400000,
              "offload": "split_offload" | null, "eager_file": {"size": ..., "mtime_ns": ...}}

:func:`open_split` (the ``split`` opener of :mod:`deepdive.deploy.runners`) loads the eager model and
places it by that plan. The eager file is read whole into host memory once at load before the plan
places it, so the budgets bound where the weights live while serving, not the peak while loading.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import attrs

from deepdive.deploy.errors import DeployError

Device = Union[int, str]
OFFLOAD = "split_offload"
Progress = Callable[[float, str], None]


def _size(text: str, key: str) -> int:
    from accelerate.utils import convert_file_size_to_int

    value = text.strip()
    try:
        size = int(value) if value.isdigit() else convert_file_size_to_int(value)
    except ValueError:
        size = -1
    if size <= 0:
        raise DeployError(f"budget {key}={text!r} is not a size: write e.g. {key}=512MiB or {key}=2GB")
    return size


def parse_budgets(text: str) -> dict[Device, Optional[int]]:
    """``"0=10GiB,cpu=30MB,disk"`` -> ``{0: 10737418240, "cpu": 30000000, "disk": None}``."""
    budgets: dict[Device, Optional[int]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key == "disk":
            if value.strip():
                raise DeployError("disk takes no size: write `disk` alone to allow offloading what does not fit to disk")
            budgets["disk"] = None
        elif key == "cpu" or key.isdigit():
            if not value.strip():
                raise DeployError(f"budget {key} has no size: write e.g. {key}=4GiB")
            budgets[int(key) if key.isdigit() else key] = _size(value, key)
        else:
            raise DeployError(f"unknown device {key!r} in the budgets: use GPU indices (0, 1, ...), cpu and disk, "
                              "e.g. 0=10GiB,cpu=30GiB,disk")
    if not any(k != "disk" for k in budgets):
        raise DeployError("no memory budget given: name at least one device with a size, e.g. cpu=2GiB,disk")
    return budgets


def _key(device: Device) -> str:
    return str(device)


def _device(key: str) -> Device:
    return int(key) if key.isdigit() else key


@attrs.define
class SplitPlan:
    """Where each submodule goes (accelerate's device map) and the bytes that puts on each device."""

    device_map: dict[str, Device]
    bytes: dict[str, int]
    """Device (``"0"``, ``"cpu"``, ``"disk"``) -> bytes of parameters and buffers placed there."""
    budgets: dict[str, Optional[int]]
    total_bytes: int

    def devices(self) -> list[Device]:
        return list(dict.fromkeys(self.device_map.values()))

    def to_json(self) -> dict[str, Any]:
        return {"device_map": {k: v for k, v in self.device_map.items()}, "bytes": dict(self.bytes),
                "budgets": dict(self.budgets), "total_bytes": self.total_bytes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SplitPlan":
        return cls(device_map={str(k): (_device(str(v)) if isinstance(v, (str, int)) else v)
                               for k, v in data["device_map"].items()},
                   bytes={str(k): int(v) for k, v in data["bytes"].items()},
                   budgets={str(k): (None if v is None else int(v)) for k, v in data["budgets"].items()},
                   total_bytes=int(data["total_bytes"]))


def _mb(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def plan(model: Any, budgets: Mapping[Device, Optional[int | str]], *,
         no_split: Optional[Sequence[str]] = None) -> SplitPlan:
    """accelerate's device map of ``model`` under ``budgets`` (GPU index / ``"cpu"`` -> bytes, ``"disk"``).

    ``no_split`` names module classes whose children must stay together (a block with a residual
    connection across its children); by default the model's own ``_no_split_modules`` (Hugging Face
    models declare it) or none. Raises :class:`DeployError` when the budgets cannot hold the model.
    """
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes, convert_file_size_to_int

    sizes: dict[Device, int] = {}
    for device, size in budgets.items():
        if device == "disk":
            continue
        if isinstance(device, str) and device != "cpu":
            raise DeployError(f"unknown device {device!r} in the budgets: use GPU indices, cpu and disk")
        sizes[device] = convert_file_size_to_int(size) if isinstance(size, str) else int(size or 0)
        if sizes[device] <= 0:
            raise DeployError(f"budget {device} must be a positive size")
    if not sizes:
        raise DeployError("no memory budget given: name at least one device with a size, e.g. cpu=2GiB,disk")
    keep_together = list(no_split if no_split is not None else getattr(model, "_no_split_modules", None) or [])
    module_sizes = compute_module_sizes(model)
    total = int(module_sizes[""])
    import logging

    quiet = logging.getLogger("accelerate.utils.modeling")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Device 1 is not available": planning for another machine's GPUs is allowed
    try:
        device_map = dict(infer_auto_device_map(model, max_memory=dict(sizes), no_split_module_classes=keep_together))
    finally:
        quiet.setLevel(level)
    placed: dict[str, int] = {}
    for name, device in device_map.items():
        placed[_key(device)] = placed.get(_key(device), 0) + int(module_sizes[name])
    if "disk" in placed and "disk" not in budgets:
        held = total - placed["disk"]
        given = ", ".join(f"{d}={_mb(s)}" for d, s in sizes.items())
        raise DeployError(f"the budgets ({given}) hold {_mb(held)} of the model's {_mb(total)}: raise them, or add "
                          "`disk` to offload the rest to disk")
    return SplitPlan(device_map=device_map, bytes=placed,
                     budgets={_key(d): (None if d == "disk" else sizes[d]) for d in budgets}, total_bytes=total)


def write_offload(model: Any, split: SplitPlan, folder: Path) -> Optional[Path]:
    """The disk part of ``split`` written once into ``folder`` (accelerate's format), atomically; None if none."""
    from accelerate.utils import extract_submodules_state_dict, offload_state_dict

    disk = [name for name, device in split.device_map.items() if device == "disk"]
    folder = Path(folder)
    if not disk:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        offload_state_dict(str(tmp), extract_submodules_state_dict(model.state_dict(), disk))
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def place(model: Any, split: SplitPlan, offload_dir: Optional[Path | str] = None) -> Any:
    """``model`` placed by ``split`` with accelerate's hooks (``dispatch_model``); returns the model.

    Layers planned for disk are read from ``offload_dir`` (written there first when it holds no
    ``index.json``). Refuses a plan naming GPUs this machine lacks.
    """
    from accelerate import dispatch_model

    gpus = sorted(d for d in split.devices() if isinstance(d, int))
    if gpus:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus[-1] >= count:
            raise DeployError(f"the plan puts layers on GPU {gpus[-1]} and this machine has {count} GPU(s): "
                              "plan again with this machine's devices (deepdive deploy split --max-memory ...)")
    disk = "disk" in split.devices()
    if disk and offload_dir is None:
        raise DeployError("the plan offloads layers to disk: give a folder for them")
    main = gpus[0] if gpus else "cpu"
    import logging

    quiet = logging.getLogger("accelerate.big_modeling")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Some parameters are on the meta device": what offloading means
    try:
        return dispatch_model(model.eval(), device_map=dict(split.device_map), main_device=main,
                              offload_dir=str(offload_dir) if disk else None, force_hooks=True)
    finally:
        quiet.setLevel(level)


def _stat(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def split_folder(folder: Path | str, budgets: Mapping[Device, Optional[int | str]], *,
                 no_split: Optional[Sequence[str]] = None, progress: Optional[Progress] = None) -> dict[str, Any]:
    """Plan the folder's eager model under ``budgets``, write its disk part, check it, record the ``split`` form."""
    from deepdive.deploy.choose import batch_of
    from deepdive.deploy.export import CHECK_BATCHES, max_abs_diff
    from deepdive.deploy.manifest import read, write
    from deepdive.deploy.runners import TorchRunner, open_runner

    say = progress or (lambda fraction, text: None)
    folder = Path(folder)
    manifest = read(folder)
    say(0.0, "loading the eager model")
    eager = open_runner(folder, manifest, "eager", threads=1)
    say(0.2, "planning")
    split = plan(eager.module, budgets, no_split=no_split)
    rows = manifest.example_rows(folder)
    names = [t.name for t in manifest.inputs]
    checks = {b: batch_of(rows, names, b) for b in CHECK_BATCHES}
    truth = {b: eager.run(x) for b, x in checks.items()}
    say(0.4, "writing the disk part" if "disk" in split.devices() else "placing")
    offload = write_offload(eager.module, split, folder / OFFLOAD)
    placed = TorchRunner("split", place(eager.module, split, offload))
    say(0.7, "checking against eager")
    diff = max(max_abs_diff(truth[b], placed.run(checks[b])) for b in CHECK_BATCHES)
    eager_file = manifest.form_path(folder, "eager")
    entry = {"file": manifest.forms["eager"]["file"], "max_abs_diff": diff, "checked_batches": list(CHECK_BATCHES),
             **split.to_json(), "offload": OFFLOAD if offload else None, "eager_file": _stat(eager_file)}
    fresh = read(folder)
    fresh.forms["split"] = entry
    fresh.failed.pop("split", None)
    write(folder, fresh)
    say(1.0, "split")
    return entry


def open_split(path: Path, threads: int) -> Any:
    """The ``split`` form's runner: the eager model placed by the plan in ``deploy.json`` beside ``path``."""
    import torch

    from deepdive.deploy.manifest import read
    from deepdive.deploy.runners import TorchRunner, open_runner

    folder = Path(path).parent
    manifest = read(folder)
    entry = manifest.forms.get("split")
    if not entry:
        raise DeployError(f"{folder} has no split plan: run `deepdive deploy split {folder} --max-memory ...` first")
    if entry.get("eager_file") != _stat(manifest.form_path(folder, "eager")):
        raise DeployError(f"{folder}'s eager model changed since it was split: run `deepdive deploy split` again")
    offload = folder / entry["offload"] if entry.get("offload") else None
    if offload is not None and not (offload / "index.json").is_file():
        raise DeployError(f"{offload} is missing its weights: run `deepdive deploy split` again")
    torch.set_num_threads(max(1, threads))
    module = open_runner(folder, manifest, "eager", threads=threads).module
    return TorchRunner("split", place(module, SplitPlan.from_json(entry), offload))
