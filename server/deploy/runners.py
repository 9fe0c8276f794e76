"""One model instance of an exported form, running a batch of numpy arrays.

A runner is what the batcher calls: ``run(inputs)`` takes one batch-first array per model input (in
the manifest's input order) and returns one array per output (the manifest's output order). Runners
are used from one thread each (the batcher gives each instance its own); ``open_runner`` builds one.

Forms (:data:`deepdive.deploy.manifest.FORMS`): ``eager`` (the whole module, ``torch.load``),
``compiled`` (``torch.compile`` of the eager module, warmed up at open), ``torchscript``, ``pt2``
(``torch.export.load(...).module()``), ``onnx`` (an onnxruntime ``InferenceSession`` with the
execution providers present), ``int8`` (the quantized module written by export).

Threads. An onnxruntime session has its own intra-op pool of ``threads``. Torch's intra-op thread count
is one setting for the whole process (``torch.set_num_threads``; measured with this build: two threads
setting 1 and 3 both then read 3, the last call wins). A torch runner sets it to its ``threads`` at open
and before a batch when it differs, so several torch instances in ONE process should be given the same
``threads`` (each batch then runs with that many, and instances run side by side: instances x threads
should not exceed the cores); for different counts use onnxruntime or separate processes. ``compiled``
code made by inductor fixes its OpenMP thread count when it is compiled, i.e. at open.

A model whose class is defined in the user's script (not in an installed package) is pickled by the
module name the script was imported under at export (:func:`deepdive.deploy.source.script_module`,
recorded in ``deploy.json`` as ``source.module``); :func:`open_runner` imports the script under that
name again before loading, so the class is found in any process.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, TypeVar

import numpy as np

from deepdive.deploy.errors import DeployError
from deepdive.deploy.manifest import Manifest

WARM_BATCHES = (8, 1, 64)
"""Batch sizes ``compiled`` is run at when opened, each but 1 with its batch dimension marked dynamic.

8 first: its graph serves a range of batch sizes; 1 gets a graph of its own (dynamo specialises sizes 0
and 1); 64 (the example rows stored) because a guard can bound the first range: measured on the digits
CNN, the conv's graph held for 2..15 only and batch 16 recompiled once for every size from 16 up."""


_T = TypeVar("_T")


def off_main_thread(work: Callable[[], _T]) -> _T:
    """``work()`` run in a thread of its own that ends with it; its result, or its exception raised here.

    For opening, warming and measuring runners before they serve from the batcher's threads. A torch op run
    on the main thread leaves the main thread's OpenMP team (libgomp's worker threads) alive for the life of
    the process, and threads that later run torch ops make teams of their own (the likely cause of what follows,
    not traced: libgomp, managing more threads than cores, stops spinning and sleeps between parallel regions).
    Measured with this build on 2 cores and 2 torch threads, BERT-mini's forward in a thread: 1.9 ms a row
    and 20 ms a batch of 16, but 5.2 and 27 ms once the main thread had run one forward (or one matmul).
    A thread that has ended takes its team with it: warming in this thread costs the serving threads nothing.
    """
    import threading

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="deepdive-open", daemon=True)  # daemon: Ctrl-C here exits
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


class Runner(Protocol):
    form: str

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One batch: arrays with the batch first, one per input; one array per output."""
        ...


def _outputs(result: Any) -> list[np.ndarray]:
    import torch

    items = result if isinstance(result, (tuple, list)) else (result,)
    out = []
    for item in items:
        if not isinstance(item, torch.Tensor):
            raise DeployError(f"the model returned a {type(item).__name__}: deploy serves models that return tensors")
        out.append(item.detach().cpu().numpy())
    return out


class TorchRunner:
    """A torch module (eager, TorchScript, an exported program's module, int8) run under inference_mode.

    ``threads``: torch's intra-op thread count, set (process-wide, see the module docstring) before each
    batch when it differs; None leaves it as it is.
    """

    def __init__(self, form: str, module: Any, threads: Optional[int] = None):
        self.form = form
        self.module = module
        self.threads = threads

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return _outputs(self.module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]))


def _load_module(path: Path) -> Any:
    """A whole module saved by ``torch.save`` (or a TorchScript archive, which ``torch.load`` hands to
    ``torch.jit.load``), on the CPU, in eval mode."""
    import torch

    # the file is a pickle of the user's own module: loaded only on the user's request
    import warnings

    try:
        with warnings.catch_warnings():  # torch.ao's int8 modules unpickle through TypedStorage, which warns
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=False).eval()
    except (AttributeError, ModuleNotFoundError) as exc:
        raise DeployError(f"cannot load {path}: {exc} (the class the model was saved with is not importable here: "
                          "export it again from its script)") from None


def _open_eager(path: Path, threads: int) -> Runner:
    return TorchRunner("eager", _load_module(path), threads)


def _open_torchscript(path: Path, threads: int) -> Runner:
    import torch

    return TorchRunner("torchscript", torch.jit.load(str(path), map_location="cpu").eval(), threads)


def _open_pt2(path: Path, threads: int) -> Runner:
    import torch

    return TorchRunner("pt2", torch.export.load(str(path)).module(), threads)


def quantized_engine() -> str:
    """The int8 kernels' engine for this machine's CPU (``x86``/``fbgemm``/``onednn``, or ``qnnpack`` on ARM)."""
    from deepdive.engine.compress.quantize import backend_for

    return backend_for("arm" if platform.machine().lower() in ("arm64", "aarch64") else "x86")


def _open_int8(path: Path, threads: int) -> Runner:
    import torch

    # the int8 kernels dispatch on this process-wide setting; quantize() left it set where export ran
    torch.backends.quantized.engine = quantized_engine()
    if path.suffix == ".ts":  # what pickle cannot save (an FX-converted static int8 graph) was traced
        return TorchRunner("int8", torch.jit.load(str(path), map_location="cpu").eval(), threads)
    return TorchRunner("int8", _load_module(path), threads)


def execution_providers() -> list[str]:
    """onnxruntime's execution providers present here, CUDA first when present, CPU last (Azure's remote
    provider left out: it runs nothing on this machine)."""
    import onnxruntime

    present = [p for p in onnxruntime.get_available_providers() if p != "AzureExecutionProvider"]
    others = [p for p in present if p not in ("CUDAExecutionProvider", "CPUExecutionProvider")]
    order = ["CUDAExecutionProvider", *others]
    return [p for p in order if p in present] + (["CPUExecutionProvider"] if "CPUExecutionProvider" in present else [])


class OnnxRunner:
    """An onnxruntime ``InferenceSession`` with its own ``threads`` intra-op threads."""

    form = "onnx"

    def __init__(self, path: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no warnings about unused initializers on stderr
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=execution_providers())
        except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: one line
            raise DeployError(f"onnxruntime cannot open {path}: {str(exc).strip().splitlines()[0][:200]}: "
                              "export the model again") from None
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise DeployError(f"the model takes {len(self.input_names)} inputs, got {len(inputs)}")
        feed = {name: np.ascontiguousarray(a) for name, a in zip(self.input_names, inputs)}
        return [np.asarray(out) for out in self.session.run(None, feed)]


def _open_onnx(path: Path, threads: int) -> Runner:
    return OnnxRunner(path, threads)


def compiled_graphs() -> int:
    """How many graphs torch.compile has compiled in this process (dynamo's counter): a rise after the
    warm-up means a recompile."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompiledRunner(TorchRunner):
    """``torch.compile`` of the eager module, warmed at open; ``graphs_at_warm`` is :func:`compiled_graphs`
    right after the warm-up (a runner serving sizes 1..max should not raise it: measured by the tests)."""

    graphs_at_warm: int = 0


def _open_compiled(path: Path, threads: int) -> Runner:
    """The eager module compiled, run once at each of :data:`WARM_BATCHES` from the folder's example rows.

    Batches other than 1 have their batch dimension marked dynamic, so a graph serves a range of sizes
    (not one per size); batch 1 gets its own (dynamo specialises sizes 0 and 1). All are compiled here,
    at open, not on the first requests (:data:`WARM_BATCHES`).
    """
    import torch

    from deepdive.deploy.manifest import read

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # before compiling: inductor's kernels keep the count they were built with
    manifest = read(path.parent)
    rows = manifest.example_rows(path.parent)
    runner = CompiledRunner("compiled", torch.compile(_load_module(path)), threads)
    for batch in WARM_BATCHES:
        with torch.inference_mode():  # made as run() makes them: dynamo guards on the tensors' dispatch keys
            arrays = [rows[spec.name] for spec in manifest.inputs]  # repeated past the stored rows when needed
            tensors = [torch.from_numpy(np.ascontiguousarray(np.resize(a, (batch, *a.shape[1:])))) for a in arrays]
            if batch > 1:
                for t in tensors:
                    torch._dynamo.mark_dynamic(t, 0)
            runner.module(*tensors)
    runner.graphs_at_warm = compiled_graphs()
    return runner


def _open_split(path: Path, threads: int) -> Runner:
    """The eager model placed across devices by ``deploy split``'s plan (:mod:`deepdive.deploy.split`)."""
    from deepdive.deploy.split import open_split

    return open_split(path, threads)


OPENERS: dict[str, Callable[[Path, int], Runner]] = {
    "eager": _open_eager, "compiled": _open_compiled, "torchscript": _open_torchscript, "pt2": _open_pt2,
    "onnx": _open_onnx, "int8": _open_int8, "split": _open_split}
"""Form -> ``opener(file, threads)``; :mod:`deepdive.deploy.export`'s forms register theirs here."""

_PICKLED = ("eager", "compiled", "int8")
"""Forms whose file may pickle classes of the user's script."""


def import_source_module(manifest: Manifest) -> None:
    """Import the export's script under the module name recorded at export (``source.module``), once per
    process, so a class the script defines unpickles here. A missing script is one line that says so."""
    import sys

    from deepdive.deploy.source import import_script

    name, script = manifest.source.get("module"), manifest.source.get("script")
    if not name or not script or name in sys.modules:
        return
    if not Path(script).is_file():
        raise DeployError(f"the model's classes come from {script}, which is gone: put it back, or export again "
                          "from where it is now")
    try:
        import_script(script, name, reuse=True)
    except Exception as exc:  # noqa: BLE001 - the user's code: one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DeployError(f"{script} failed on import: {type(exc).__name__}: {text}"[:300]) from None


def open_runner(folder: Path | str, manifest: Manifest, form: str, *, threads: int = 1) -> Runner:
    """A runner of ``form`` from the export folder (one :class:`DeployError` line when it cannot)."""
    folder = Path(folder)
    opener = OPENERS.get(form)
    if opener is None:
        raise DeployError(f"unknown form {form!r}: one of {', '.join(sorted(OPENERS))}")
    path = manifest.form_path(folder, form)
    if not path.is_file():
        raise DeployError(f"{path} is missing: export the model again")
    if form in _PICKLED:
        import_source_module(manifest)
    return opener(path, threads)
