"""``deepdive/checkpoints/*``: the editor's Checkpoints view, fed by the checkpoint stores of the workspace.

A store is the ``checkpoint_dir`` of a training run (``dd.setup(checkpoint_dir=...)``, ``deepdive train
--checkpoint-dir``): a folder with a ``STORE.json``. There is no default location, so ``list`` finds
stores by walking the workspace (bounded: see :func:`discover`) and adds the folders the client names.

What runs where, so that the daemon answers in milliseconds and never imports torch:

- ``list`` reads each store's manifests in a worker thread through :class:`deepdive.engine.ckpt.Store`
  (JSON, with each manifest's xxh3 checksum: numpy, zstandard and xxhash, no torch);
- ``verify`` and ``export`` run ``deepdive ckpt verify|export --json`` in a subprocess (verify decodes
  every chunk; export loads the tensors with torch). A cancelled request kills its subprocess;
- ``resume`` starts a ``train`` job on the store, through the same path as ``deepdive/jobs/start``; the
  engine resumes from the newest checkpoint that loads (the CLI's behaviour with ``--checkpoint-dir``).

Verify verdicts are remembered per checkpoint in the daemon's state folder, together with the
manifest's size, inode and modification time: a checkpoint saved again (a new manifest) shows as not
verified. A verdict says what was true when verify ran; damage after it is found by the next verify.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

from deepdive.fsutil import atomic_write_text
from deepdive.jobs.kinds import JobRejected
from deepdive.protocol import (
    CHECKPOINTS_EXPORT, CHECKPOINTS_LIST, CHECKPOINTS_RESUME, CHECKPOINTS_VERIFY, CheckpointExportParams,
    CheckpointExportResult, CheckpointList, CheckpointListParams, CheckpointProblem, CheckpointResumeParams,
    CheckpointRun, CheckpointStep, CheckpointVerifyParams, CheckpointVerifyResult, JobInfo, JobStartParams,
)

#: The workspace walk stops after this many folders (a data set of many small folders must not stall it).
MAX_FOLDERS = 5000
#: ... and does not go deeper than this below the workspace.
MAX_DEPTH = 6
#: Folders never walked into: tool caches, environments, version control.
SKIP = frozenset({"node_modules", "__pycache__", "site-packages", "dist-packages"})
VERDICTS_FILE = "checkpoint-verdicts.json"
#: How many past jobs are searched for the train job that saved into a store.
JOB_HISTORY = 200
#: torchrun options that take a value, as :func:`deepdive.jobs.kinds._train` writes them.
_TORCHRUN_VALUED = {"--nproc-per-node", "--max-restarts", "--nnodes", "--rdzv-backend", "--rdzv-endpoint"}

StartJob = Callable[[Any, JobStartParams], Awaitable[JobInfo]]


# ------------------------------------------------------------------------------------------------
# Finding stores
# ------------------------------------------------------------------------------------------------


def discover(workspace: Optional[str]) -> tuple[list[Path], bool]:
    """The store folders under ``workspace`` (a folder holding ``STORE.json``), and whether the walk was cut.

    Breadth first, without following symbolic links, skipping hidden folders, :data:`SKIP` and Python
    environments (a ``pyvenv.cfg``); a store's own folders are not walked into.
    """
    if not workspace or not os.path.isdir(workspace):
        return [], False
    found: list[Path] = []
    queue: list[tuple[str, int]] = [(workspace, 0)]
    visited = 0
    while queue:
        folder, depth = queue.pop(0)
        visited += 1
        if visited > MAX_FOLDERS:
            return sorted(found), True
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        names = {e.name for e in entries}
        if "STORE.json" in names:      # the workspace itself may be a store
            found.append(Path(folder))
            continue
        if "pyvenv.cfg" in names or depth >= MAX_DEPTH:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name in SKIP:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    queue.append((entry.path, depth + 1))
            except OSError:
                continue
    return sorted(found), False


def _resolve(path: str, workspace: Optional[str]) -> Path:
    """``path`` as an absolute path (relative ones are taken from the workspace)."""
    given = Path(path).expanduser()
    return given if given.is_absolute() else Path(workspace or os.getcwd()) / given


def _display_name(path: Path, workspace: Optional[str]) -> str:
    if workspace:
        try:
            relative = path.relative_to(workspace).as_posix()
            return path.name if relative == "." else relative
        except ValueError:
            pass
    return str(path)


# ------------------------------------------------------------------------------------------------
# The train job that saved into a store (for "resume this run")
# ------------------------------------------------------------------------------------------------


def _train_command(argv: list[str]) -> Optional[dict[str, Any]]:
    """Script, arguments, nproc and max_restarts of a ``train`` job's torchrun command line, or None."""
    try:
        i = argv.index("torch.distributed.run") + 1
    except ValueError:
        return None
    found: dict[str, Any] = {"nproc": 1, "max_restarts": 0}
    while i < len(argv) and argv[i].startswith("--"):
        flag = argv[i]
        if flag in _TORCHRUN_VALUED and i + 1 < len(argv):
            if flag in ("--nproc-per-node", "--max-restarts") and argv[i + 1].isdigit():
                found["nproc" if flag == "--nproc-per-node" else "max_restarts"] = int(argv[i + 1])
            i += 2
        else:
            i += 1
    if i >= len(argv):
        return None
    return {**found, "script": argv[i], "args": list(argv[i + 1:])}


def _saving_job(times: list[float], jobs: list[JobInfo], now: float) -> Optional[dict[str, Any]]:
    """The command of the newest train job that was running when one of ``times`` (save times) fell.

    The daemon does not record a job's checkpoint folder, but a checkpoint saved while exactly that
    job ran was, in a workspace's own job history, saved by it (or by a job running beside it: the
    newest such job is taken, and the client shows the script before it runs).
    """
    for job in sorted(jobs, key=lambda j: j.created_at, reverse=True):
        if job.kind != "train" or job.started_at is None:
            continue
        end = job.ended_at if job.ended_at is not None else now
        if any(job.started_at <= t <= end for t in times):
            command = _train_command(job.argv)
            if command is not None:
                return {**command, **_train_options(job.options)}
    return None


_CARRIED = ("precision", "grad_compression", "nnodes", "rdzv_endpoint")


def _train_options(options: Optional[dict[str, Any]]) -> dict[str, Any]:
    """What a train job was started with that its command line does not show (precision and gradient compression
    travel as environment variables): carried over to the resumed job. Empty for jobs recorded before options were."""
    if not options:
        return {}
    return {key: options[key] for key in _CARRIED if options.get(key) is not None}


# ------------------------------------------------------------------------------------------------
# Verify verdicts, remembered per checkpoint
# ------------------------------------------------------------------------------------------------


def _manifest_stamp(store: Path, name: str) -> Optional[list[int]]:
    """What identifies a manifest file as it is now: size, inode and modification time (ns)."""
    try:
        st = (store / "manifests" / f"{name}.json").stat()
    except OSError:
        return None
    return [st.st_size, st.st_ino, st.st_mtime_ns]


class Verdicts:
    """``{store: {checkpoint: {ok, at, problem, stamp}}}`` in one JSON file of the daemon's state folder.

    Written whole (temp file, fsync, rename) from the event loop's thread only. An unreadable file is
    treated as empty: verdicts are a convenience, verify can always be run again.
    """

    def __init__(self, directory: Optional[Path]):
        self.path = directory / VERDICTS_FILE if directory else None

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def of(self, store: Path) -> dict[str, Any]:
        found = self._read().get(str(store))
        return found if isinstance(found, dict) else {}

    def record(self, store: Path, verdicts: dict[str, dict[str, Any]]) -> None:
        if self.path is None or not verdicts:
            return
        data = self._read()
        mine = data.setdefault(str(store), {})
        mine.update(verdicts)
        data[str(store)] = {name: v for name, v in mine.items() if (store / "manifests" / f"{name}.json").exists()}
        atomic_write_text(self.path, json.dumps(data, indent=1))


def _apply_verdict(step: CheckpointStep, store: Path, verdict: Optional[dict[str, Any]]) -> None:
    """Fill ``step.verified`` from a remembered verdict that still describes the manifest on disk."""
    if not verdict or verdict.get("stamp") != _manifest_stamp(store, step.name):
        return
    step.verified = "ok" if verdict.get("ok") else "corrupt"
    step.verified_at = verdict.get("at")
    step.problem = verdict.get("problem")


# ------------------------------------------------------------------------------------------------
# Reading a store (worker thread)
# ------------------------------------------------------------------------------------------------


def _disk_bytes(root: Path) -> int:
    """Chunk and manifest files on disk (temp files of a save in progress or killed are not counted)."""
    total = 0
    for path in (*root.glob("chunks/*/*"), *root.glob("manifests/*.json")):
        if not path.name.startswith("."):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
    return total


def read_run(path: Path, workspace: Optional[str], verdicts: dict[str, Any]) -> CheckpointRun:
    """One store as the view shows it; a store that cannot be read comes back with ``error`` set."""
    from deepdive.engine.ckpt import CheckpointError, Store

    run = CheckpointRun(path=str(path), name=_display_name(path, workspace), checkpoints=[], disk_bytes=0, raw_bytes=0,
                        damaged=[], args=[], nproc=1, max_restarts=0)
    try:
        store = Store(path, create=False)
        checkpoints = store.list()
        newest = store.newest_first()
    except (CheckpointError, OSError) as exc:
        run.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return run
    latest = newest[0][0] if newest else None
    run.damaged = sorted({name for name, _ in newest} - {c.name for c in checkpoints})
    for c in checkpoints:
        step = CheckpointStep(name=c.name, step=c.step, time=c.time, stored_bytes=c.stored_bytes,
                              new_bytes=c.new_bytes, raw_bytes=c.raw_bytes, tensors=c.tensors,
                              metrics=dict(c.metrics), lossy=c.lossy, latest=c.name == latest)
        _apply_verdict(step, path, verdicts.get(c.name))
        run.checkpoints.append(step)
    run.disk_bytes = _disk_bytes(path)
    run.raw_bytes = sum(c.raw_bytes for c in checkpoints)
    run.ratio = run.raw_bytes / run.disk_bytes if run.disk_bytes else None
    return run


def list_runs(workspace: Optional[str], extra: list[str], verdicts: Verdicts) -> CheckpointList:
    """Every store of the workspace plus ``extra`` folders, sorted by name (runs a while: call off the loop)."""
    found, truncated = discover(workspace)
    paths = list(found)
    for given in extra:
        path = _resolve(given, workspace)
        if all(os.path.realpath(path) != os.path.realpath(p) for p in paths):
            paths.append(path)
    runs = [read_run(p, workspace, verdicts.of(p)) for p in paths]
    return CheckpointList(runs=sorted(runs, key=lambda r: r.name), truncated=truncated)


# ------------------------------------------------------------------------------------------------
# `deepdive ckpt verify | export --json` in a subprocess
# ------------------------------------------------------------------------------------------------


async def run_ckpt_cli(*args: str) -> tuple[int, Any]:
    """``python -m deepdive ckpt ARGS --json``: (exit status, the JSON it printed).

    Exit 2 (bad input) becomes :class:`JobRejected` with the CLI's one line. The process is killed when
    the request is cancelled. It runs from the home folder with ``-P``: nothing in a workspace can
    shadow deepdive's modules.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", "deepdive", "ckpt", *args, "--json", cwd=os.path.expanduser("~"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    lines = err.decode(errors="replace").strip().splitlines()
    if proc.returncode == 2 or proc.returncode not in (0, 1):
        last = lines[-1] if lines else f"`deepdive ckpt {args[0]}` exited with status {proc.returncode}"
        raise JobRejected(last.removeprefix("deepdive: error: "))
    try:
        return proc.returncode, json.loads(out)
    except ValueError:
        raise JobRejected(f"`deepdive ckpt {args[0]}` printed no JSON (exit status {proc.returncode}): "
                          f"{lines[-1] if lines else 'no message'}") from None


def _problem_text(p: CheckpointProblem) -> str:
    where = f"tensor '{p.tensor}'" if p.tensor else "manifest"
    return f"{where}{f' (chunk {p.chunk[:12]})' if p.chunk else ''}: {p.reason}"


async def verify(store: Path, which: Optional[str], verdicts: Verdicts) -> CheckpointVerifyResult:
    """Verify in a subprocess and remember a verdict for each checkpoint whose manifest did not change meanwhile."""
    started = time.time()
    names = [p.stem for p in (store / "manifests").glob("step-*.json")]
    before = {name: _manifest_stamp(store, name) for name in names}
    _, data = await run_ckpt_cli("verify", str(store), *([which] if which else []))
    problems = [CheckpointProblem(checkpoint=p["checkpoint"], tensor=p["tensor"] or "", chunk=p["chunk"] or "",
                                  reason=p["reason"]) for p in data["problems"]]
    result = CheckpointVerifyResult(store=str(store), checkpoints=sorted(data["checkpoints"]), ok=bool(data["ok"]),
                                    problems=problems, unchecked=list(data.get("unchecked_manifests") or []),
                                    seconds=round(time.time() - started, 3))
    recorded: dict[str, dict[str, Any]] = {}
    for name in result.checkpoints:
        stamp = _manifest_stamp(store, name)
        if stamp is None or stamp != before.get(name):
            continue    # saved again (or deleted) while verify ran: the verdict is about bytes no longer there
        mine = [p for p in problems if p.checkpoint == name]
        recorded[name] = {"ok": not mine, "at": time.time(), "stamp": stamp,
                          "problem": _problem_text(mine[0]) if mine else None}
    verdicts.record(store, recorded)
    return result


# ------------------------------------------------------------------------------------------------
# Registration on the daemon
# ------------------------------------------------------------------------------------------------


def register(request: Callable[..., Any], start_job: StartJob) -> None:
    """Register the four requests with the daemon's ``request`` decorator; ``start_job`` is
    ``deepdive/jobs/start``'s implementation (resume starts its job the same way)."""

    def verdicts_of(ls: Any) -> Verdicts:
        return Verdicts(ls.store.directory if ls.store is not None else None)

    @request(CHECKPOINTS_LIST)
    async def on_list(ls: Any, params: CheckpointListParams) -> CheckpointList:
        """deepdive/checkpoints/list"""
        answer = await asyncio.to_thread(list_runs, ls.workspace_root, params.paths, verdicts_of(ls))
        jobs = ls.jobs.list(JOB_HISTORY) if ls.jobs is not None else []
        now = time.time()
        for run in answer.runs:
            command = _saving_job([c.time for c in run.checkpoints], jobs, now)
            if command is not None:
                run.script, run.args = command["script"], command["args"]
                run.nproc, run.max_restarts = command["nproc"], command["max_restarts"]
        return answer

    @request(CHECKPOINTS_VERIFY)
    async def on_verify(ls: Any, params: CheckpointVerifyParams) -> CheckpointVerifyResult:
        """deepdive/checkpoints/verify"""
        return await verify(_resolve(params.store, ls.workspace_root), params.checkpoint, verdicts_of(ls))

    @request(CHECKPOINTS_EXPORT)
    async def on_export(ls: Any, params: CheckpointExportParams) -> CheckpointExportResult:
        """deepdive/checkpoints/export"""
        out = _resolve(params.out, ls.workspace_root)
        args = ["export", str(_resolve(params.store, ls.workspace_root)), params.checkpoint, "--out", str(out)]
        args += ["--key", params.key] if params.key else []
        args += ["--force"] if params.force else []
        _, data = await run_ckpt_cli(*args)
        return CheckpointExportResult(path=data["path"], checkpoint=data["checkpoint"], tensors=int(data["tensors"]),
                                      bytes=int(data["bytes"]), format=data["format"])

    @request(CHECKPOINTS_RESUME)
    async def on_resume(ls: Any, params: CheckpointResumeParams) -> JobInfo:
        """deepdive/checkpoints/resume: a train job on the store; the engine resumes from it."""
        store = _resolve(params.store, ls.workspace_root)
        run = await asyncio.to_thread(read_run, store, ls.workspace_root, {})
        if run.error:
            raise JobRejected(run.error)
        options: dict[str, Any] = {"checkpoint_dir": str(store)}
        if params.path:
            options.update(path=params.path, args=params.args or [])
        else:
            jobs = ls.jobs.list(JOB_HISTORY) if ls.jobs is not None else []
            command = _saving_job([c.time for c in run.checkpoints], jobs, time.time())
            if command is None:
                raise JobRejected(f"no train job of this workspace is known to have saved to {store}: give the "
                                  "training script to run (Resume This Run asks for it)")
            options.update(path=command["script"], args=params.args if params.args is not None else command["args"],
                           nproc=command["nproc"], max_restarts=command["max_restarts"],
                           **{key: command[key] for key in _CARRIED if key in command})
        if params.nproc is not None:
            options["nproc"] = params.nproc
        title = f"resume {run.name}: {Path(options['path']).name} ×{options.get('nproc', 1)}"
        return await start_job(ls, JobStartParams(kind="train", options=options, title=title))
