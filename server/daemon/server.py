"""The Deepdive daemon: a pygls 2 language server over stdio.

Handlers are thin: each parses its params against :mod:`deepdive.protocol`, calls into a feature
module (doctor, jobs) and returns the wire form. Anything slow runs in a subprocess (the torch probe,
every job) or a worker thread (NVML), so the event loop answers requests in milliseconds while jobs
stream output. This process never imports torch, transformers or optuna.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from deepdive import __version__, doctor
from deepdive.daemon import checkpoints
from deepdive.daemon.framing import serve_stdio
from deepdive.daemon.generate import GenerateRefused
from deepdive.daemon.jsonrpc import DeepdiveProtocol
from deepdive.daemon.run_progress import training_progress
from deepdive.daemon.terminal_runs import NOT_CANCELLABLE, TerminalRuns
from deepdive.jobs.kinds import JobRejected
from deepdive.jobs.manager import JobManager
from deepdive.jobs.store import JobStore, state_dir
from deepdive.protocol import (
    DOCTOR, GENERATE, HUB, JOBS_CANCEL, JOBS_EVENT, JOBS_KINDS, JOBS_LIST, JOBS_LOG, JOBS_START, MODELS_LIST,
    MODELS_SET_DEFAULT, PROTOCOL_VERSION, TELEMETRY_SUMMARY, TUNE_APPLY, VERSION, DoctorParams, DoctorReport,
    GenerateParams, GpuInfo, HubInfo, InvalidPayload, JobEvent, JobIdParams, JobKindList, JobList, JobListParams,
    JobLog, JobStartParams, ModelList, ModelListParams, ModelSetDefaultParams, Request, TorchInfo, TuneApplyParams,
    TuneApplyResult, VersionResult, from_wire, to_wire,
)

log = logging.getLogger("deepdive.daemon")

_REQUEST_FAILED = -32001  # JSON-RPC server-error range: the request was valid but could not be done


class DeepdiveServer(LanguageServer):
    protocol: DeepdiveProtocol

    def __init__(self) -> None:
        super().__init__("deepdive", __version__, protocol_cls=DeepdiveProtocol)
        self.started_at = time.time()
        self.trusted = False  # until the client says otherwise in `initialize`
        self.workspace_root: Optional[str] = None
        self.store: Optional[JobStore] = None
        self.jobs: Optional[JobManager] = None
        self.telemetry: Optional[Any] = None  # deepdive.daemon.telemetry.TelemetryService once started
        self.telemetry_error: Optional[str] = None
        self.telemetry_started: Optional[asyncio.Future[None]] = None
        self.terminal_runs = TerminalRuns(self._is_daemon_job, self._on_terminal_run)
        self._expiry: Optional[asyncio.Task[None]] = None
        self._torch: Optional[asyncio.Task[TorchInfo]] = None
        self._gpus: Optional[asyncio.Task[GpuInfo]] = None
        self._report: Optional[DoctorReport] = None
        self._progress_token_of_job: dict[str, str] = {}
        self._job_of_progress_token: dict[str, str] = {}

    # -- environment probes (cached for the daemon's life; `refresh` probes again) -------------

    def start_probes(self) -> None:
        self._torch = asyncio.ensure_future(doctor.probe_torch())
        self._gpus = asyncio.ensure_future(asyncio.to_thread(doctor.gpu_info))
        self._report = None

    async def stop_probes(self) -> None:
        for task in (self._torch, self._gpus):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def report(self, refresh: bool) -> DoctorReport:
        """The environment report, built once per probe; ``refresh`` probes again."""
        if refresh or self._torch is None or self._gpus is None:
            self.start_probes()
        assert self._torch is not None and self._gpus is not None
        torch_info, gpus = await asyncio.gather(self._torch, self._gpus)
        if self._report is None:
            self._report = await asyncio.to_thread(
                doctor.build_report, torch_info, gpus, str(self.store.directory) if self.store else None
            )
        if self.jobs is not None:  # read each time: a deep check that just finished shows at once
            self._report.deep_check = doctor.deep_check_summary(self.jobs.list(200))
        return self._report

    # -- jobs ---------------------------------------------------------------------------------

    def open_jobs(self) -> None:
        override = os.environ.get("DEEPDIVE_STATE_DIR")
        if override:
            directory = Path(override)
        elif self.workspace_root and self.trusted:
            directory = state_dir(self.workspace_root)
        else:
            directory = state_dir(None)
        self.store = JobStore(directory)
        self.jobs = JobManager(self.store, workspace=self.workspace_root, trusted=self.trusted)
        self.jobs.subscribe(self._on_job_event)
        for job in self.jobs.reap_orphans():
            log.warning("job %s (%s) marked lost: %s", job.id, job.title, job.reason)

    async def start_telemetry(self) -> None:
        """The hub, the machine sampler and the metrics store; jobs learn the hub's URL."""
        from deepdive.daemon.telemetry import TelemetryService

        assert self.store is not None and self.jobs is not None
        jobs = self.jobs
        service = TelemetryService(
            self.store.directory,
            jobs.running_pids,
            on_summary=lambda summary: self.protocol.notify(TELEMETRY_SUMMARY.method, to_wire(summary)),
            on_message=self._on_hub_message,
        )
        try:
            await service.start()
        except Exception as exc:  # no hub is a degraded daemon, not a dead one
            self.telemetry_error = f"{type(exc).__name__}: {exc}"
            log.exception("the telemetry hub could not start")
            return
        self.telemetry = service
        jobs.job_env.update(service.job_env())
        # `deepdive train` typed in any terminal of this workspace finds this hub, and `deepdive dashboard`
        # there opens this dashboard instead of starting a second one over the same store
        from deepdive.telemetry import discovery

        try:
            discovery.write(self.store.directory, service.info(), dashboard_url=service.dashboard_url(),
                            owner="editor's daemon")
        except OSError as exc:
            log.warning("could not announce the hub in %s: %s", self.store.directory, exc)
        self._expiry = asyncio.ensure_future(self._expire_terminal_runs())

    # -- runs started in a terminal -------------------------------------------------------------

    def _on_hub_message(self, message: dict[str, Any]) -> None:
        """Each ingest batch: a training job's progress, or a run started in a terminal."""
        run = str(message.get("run") or "")
        if self.jobs is not None and self.jobs.is_running(run):
            progress = training_progress(message)
            if progress is not None:
                self.jobs.report_progress(run, *progress)
            return
        self.terminal_runs.observe(message)

    def _is_daemon_job(self, run: str) -> bool:
        return self.jobs is not None and self.jobs.get(run) is not None

    def _on_terminal_run(self, event: JobEvent) -> None:
        self.protocol.notify(JOBS_EVENT.method, to_wire(event))

    async def _expire_terminal_runs(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.terminal_runs.expire()

    def _client_has_progress(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.work_done_progress)

    def _on_job_event(self, event: JobEvent) -> None:
        # work-done progress first: a client that sees `finished` has already seen the progress end
        self._update_progress(event)
        self.protocol.notify(JOBS_EVENT.method, to_wire(event))
        if self.telemetry is not None and event.job is not None:
            # a job's telemetry run carries the job's id (the engine reads DEEPDIVE_JOB_ID)
            if event.type == "started":
                self.telemetry.run_started(event.job_id, event.job.title, event.job.kind)
            elif event.type == "finished":
                self.telemetry.run_ended(event.job_id, event.job.state)

    def _update_progress(self, event: JobEvent) -> None:
        token = self._progress_token_of_job.get(event.job_id)
        if token is None:
            return
        if event.type == "progress" and event.progress is not None:
            fraction = event.progress.fraction
            self.work_done_progress.report(
                token,
                types.WorkDoneProgressReport(
                    message=event.progress.message,
                    percentage=None if fraction is None else int(fraction * 100),
                    cancellable=True,
                ),
            )
        elif event.type == "finished" and event.job is not None:
            job = event.job
            message = job.state if not job.reason else f"{job.state}: {job.reason}"
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
            self._drop_progress(event.job_id)

    async def show_progress(self, job_id: str, title: str) -> None:
        """Server-initiated work-done progress with a cancel button, for clients that support it."""
        if not self._client_has_progress():
            return
        token = f"deepdive-job-{job_id}"
        try:
            await self.work_done_progress.create_async(token)
        except Exception:
            log.warning("client refused work-done progress for job %s", job_id, exc_info=True)
            return
        assert self.jobs is not None
        job = self.jobs.get(job_id)
        self.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=title, cancellable=True, percentage=0, message="starting")
        )
        if job is None or not self.jobs.is_running(job_id):
            state = job.state if job else "finished"
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=state))
            return
        self._progress_token_of_job[job_id] = token
        self._job_of_progress_token[token] = job_id

    def _drop_progress(self, job_id: str) -> None:
        token = self._progress_token_of_job.pop(job_id, None)
        if token is not None:
            self._job_of_progress_token.pop(token, None)
            self.work_done_progress.tokens.pop(token, None)

    def job_for_progress_token(self, token: Any) -> Optional[str]:
        return self._job_of_progress_token.get(str(token))


server = DeepdiveServer()


def request(spec: Request) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Register ``spec.method``: params validated against the protocol, result sent in wire form.

    Bad params become JSON-RPC InvalidParams naming the field; a rejected action becomes a
    server error with the reason; anything unexpected is logged with its traceback and returned as
    an internal error. The daemon stays up either way.
    """

    def decorate(impl: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(impl)
        async def handler(ls: DeepdiveServer, raw: Any) -> Any:
            try:
                params = from_wire(raw, spec.params) if spec.params is not None else None
            except InvalidPayload as exc:
                raise JsonRpcInvalidParams(str(exc)) from None
            started = time.perf_counter()
            try:
                result = await impl(ls, params) if spec.params is not None else await impl(ls)
            except (JobRejected, GenerateRefused) as exc:
                raise JsonRpcException(str(exc), code=_REQUEST_FAILED) from None
            except JsonRpcException:
                raise
            except Exception as exc:  # a daemon fault: the traceback goes to the log, not to the client
                log.exception("%s failed", spec.method)
                raise JsonRpcInternalError(f"{spec.method} failed: {type(exc).__name__}: {exc} "
                                           "(the traceback is in the Deepdive output channel)") from None
            log.debug("%s answered in %.1f ms", spec.method, (time.perf_counter() - started) * 1e3)
            return to_wire(result)

        server.feature(spec.method)(handler)
        return impl

    return decorate


def _require_jobs(ls: DeepdiveServer) -> JobManager:
    if ls.jobs is None:
        raise JsonRpcException("the daemon is not initialized yet: send `initialize` first", code=-32002)
    return ls.jobs


# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------


@server.feature(types.INITIALIZE)
def on_initialize(ls: DeepdiveServer, params: types.InitializeParams) -> None:
    """initialize: learn the workspace and trust, open the job store, start the environment probes.

    The workspace is trusted only when the client says so (``"trusted": true`` in
    initializationOptions); a client that does not know about trust gets no workspace code run.
    """
    options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    ls.trusted = options.get("trusted") is True
    root = None
    if params.workspace_folders:
        root = params.workspace_folders[0].uri
    elif params.root_uri:
        root = params.root_uri
    if root and root.startswith("file:"):
        ls.workspace_root = unquote(urlparse(root).path)
    elif params.root_path:
        ls.workspace_root = params.root_path
    _client_log.loop = asyncio.get_running_loop()
    ls.open_jobs()
    ls.start_probes()
    log.info(
        "deepdive %s (pid %d) serving %s; workspace %s (%s); state in %s",
        __version__, os.getpid(), options.get("clientName", "a client"), ls.workspace_root or "none",
        "trusted" if ls.trusted else "untrusted: jobs that run workspace code are refused",
        ls.store.directory if ls.store else "?",
    )


@server.feature(types.INITIALIZED)
def on_initialized(ls: DeepdiveServer, params: types.InitializedParams) -> None:
    """initialized: start telemetry now that initialize is answered (its imports take a few 100 ms)."""
    ls.telemetry_started = asyncio.ensure_future(ls.start_telemetry())


@server.feature(types.SHUTDOWN)
async def on_shutdown(ls: DeepdiveServer, *args: Any) -> None:
    """shutdown: cancel every running job (their process groups are killed) before answering."""
    if ls.jobs is not None:
        await ls.jobs.shutdown()
    await ls.stop_probes()
    worker_client = sys.modules.get("deepdive.codegen.backends.worker_client")
    if worker_client is not None:  # the code-generation model worker, when one was started
        await asyncio.to_thread(worker_client.shutdown_shared)
    if ls.telemetry_started is not None:
        await ls.telemetry_started
    if ls._expiry is not None:
        ls._expiry.cancel()
        ls._expiry = None
    if ls.telemetry is not None:
        from deepdive.telemetry import discovery

        if ls.store is not None:
            discovery.remove(ls.store.directory)
        await ls.telemetry.stop()
        ls.telemetry = None


@server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
async def on_progress_cancel(ls: DeepdiveServer, params: types.WorkDoneProgressCancelParams) -> None:
    """window/workDoneProgress/cancel: the user pressed cancel on a job's progress notification."""
    job_id = ls.job_for_progress_token(params.token)
    if job_id is not None and ls.jobs is not None:
        await ls.jobs.cancel(job_id)


# ---------------------------------------------------------------------------------------------
# deepdive/version, deepdive/doctor
# ---------------------------------------------------------------------------------------------


@request(VERSION)
async def on_version(ls: DeepdiveServer) -> VersionResult:
    """deepdive/version"""
    return VersionResult(
        version=__version__, python=sys.version.split()[0], pid=os.getpid(), started_at=ls.started_at,
        protocol=PROTOCOL_VERSION,
    )


@request(DOCTOR)
async def on_doctor(ls: DeepdiveServer, params: DoctorParams) -> Any:
    """deepdive/doctor"""
    return await ls.report(params.refresh)


# ---------------------------------------------------------------------------------------------
# deepdive/jobs/*
# ---------------------------------------------------------------------------------------------


@request(JOBS_START)
async def on_jobs_start(ls: DeepdiveServer, params: JobStartParams) -> Any:
    """deepdive/jobs/start"""
    jobs = _require_jobs(ls)
    if ls.telemetry_started is not None:
        await ls.telemetry_started  # so the job gets DEEPDIVE_HUB
    if params.kind == "train":
        await _release_model_gpu()
    info = await jobs.start(params)
    if params.progress and jobs.is_running(info.id):
        asyncio.ensure_future(ls.show_progress(info.id, info.title))
    return info


async def _release_model_gpu() -> None:
    """A training job needs the GPU: the code-generation model (if one is loaded) gives its memory back."""
    worker_client = sys.modules.get("deepdive.codegen.backends.worker_client")
    if worker_client is None or worker_client._shared is None:  # no model was ever loaded
        return
    try:
        outcome = await asyncio.wait_for(asyncio.to_thread(worker_client.release_shared), 30)
        log.info("code-generation model released for a training job: %s", outcome)
    except Exception as exc:
        log.warning("could not release the code-generation model's GPU memory: %s", exc)


@request(JOBS_LIST)
async def on_jobs_list(ls: DeepdiveServer, params: JobListParams) -> JobList:
    """deepdive/jobs/list"""
    jobs = _require_jobs(ls).list(params.limit)
    merged = sorted(jobs + ls.terminal_runs.jobs(), key=lambda j: j.created_at, reverse=True)
    return JobList(jobs=merged[: params.limit])


@request(JOBS_CANCEL)
async def on_jobs_cancel(ls: DeepdiveServer, params: JobIdParams) -> Any:
    """deepdive/jobs/cancel"""
    if ls.terminal_runs.get(params.id) is not None:
        raise JobRejected(NOT_CANCELLABLE)
    return await _require_jobs(ls).cancel(params.id)


@request(JOBS_LOG)
async def on_jobs_log(ls: DeepdiveServer, params: JobIdParams) -> JobLog:
    """deepdive/jobs/log"""
    jobs = _require_jobs(ls)
    if ls.terminal_runs.get(params.id) is not None:
        raise JobRejected("a run started in a terminal: its output is in that terminal")
    if jobs.get(params.id) is None:
        raise JobRejected(f"no job {params.id!r}")
    lines, truncated = jobs.store.output(params.id)
    return JobLog(id=params.id, lines=lines, truncated=truncated)


@request(HUB)
async def on_hub(ls: DeepdiveServer) -> HubInfo:
    """deepdive/hub"""
    if ls.telemetry_started is not None:
        await ls.telemetry_started
    if ls.telemetry is None:
        return HubInfo(running=False, reason=ls.telemetry_error or "the daemon is not initialized yet")
    return ls.telemetry.info()


@request(JOBS_KINDS)
async def on_jobs_kinds(ls: DeepdiveServer) -> JobKindList:
    """deepdive/jobs/kinds"""
    return JobKindList(kinds=_require_jobs(ls).kinds())


@request(GENERATE)
async def on_generate(ls: DeepdiveServer, params: GenerateParams) -> Any:
    """deepdive/generate: a program from a sentence, verified; partial results on $/progress."""
    from deepdive.daemon import generate

    return await generate.generate(ls, params)


@request(TUNE_APPLY)
async def on_tune_apply(ls: DeepdiveServer, params: TuneApplyParams) -> TuneApplyResult:
    """deepdive/tune/applyBest: edits that set the script's suggest() defaults to the given parameters."""
    path = Path(params.path)
    if not path.is_absolute():
        path = Path(ls.workspace_root or os.getcwd()) / path
    return await asyncio.to_thread(_tune_edits, path, params)  # file I/O and parsing off the loop


@request(MODELS_LIST)
async def on_models_list(ls: DeepdiveServer, params: ModelListParams) -> ModelList:
    """deepdive/models/list: the registry (plain JSON) and, with discover, Ollama and the usual folders."""
    from deepdive.models import service

    return await _models(service.list_models, params.discover)


@request(MODELS_SET_DEFAULT)
async def on_models_set_default(ls: DeepdiveServer, params: ModelSetDefaultParams) -> ModelList:
    """deepdive/models/setDefault: the model `auto` uses (a found one is added first)."""
    from deepdive.models import service

    return await _models(service.set_default, params)


async def _models(fn: Callable[..., ModelList], arg: Any) -> ModelList:
    """File reads and a short local HTTP probe, off the loop; a model error is the answer, in one line."""
    from deepdive.models import ModelError

    try:
        return await asyncio.to_thread(fn, arg)
    except ModelError as exc:
        raise JsonRpcException(str(exc), code=_REQUEST_FAILED) from None


checkpoints.register(request, on_jobs_start)  # deepdive/checkpoints/*


def _tune_edits(path: Path, params: TuneApplyParams) -> TuneApplyResult:
    from deepdive.tune.apply import apply_best

    text = params.text
    if text is None:
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            raise JobRejected(f"no such script: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise JobRejected(f"cannot read {path}: {exc}") from None
    try:
        _, edits, changed, unchanged, missing = apply_best(text, params.params)
    except SyntaxError as exc:
        raise JobRejected(f"{path.name} does not parse: {exc.msg} (line {exc.lineno})") from None
    except ValueError as exc:
        raise JobRejected(str(exc)) from None
    return TuneApplyResult(edits=edits, changed=changed, unchanged=unchanged, missing=missing)


# ---------------------------------------------------------------------------------------------
# Logging and entry point
# ---------------------------------------------------------------------------------------------


class ClientLogHandler(logging.Handler):
    """Sends log records to the client as window/logMessage (stderr gets them too)."""

    _TYPES = {
        logging.ERROR: types.MessageType.Error,
        logging.WARNING: types.MessageType.Warning,
        logging.INFO: types.MessageType.Info,
        logging.DEBUG: types.MessageType.Log,
    }

    def __init__(self, ls: DeepdiveServer) -> None:
        super().__init__()
        self.ls = ls
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.loop is None or self.loop.is_closed() or self.ls.protocol.writer is None:
            return
        level = max(lvl for lvl in self._TYPES if lvl <= max(record.levelno, logging.DEBUG))
        params = types.LogMessageParams(type=self._TYPES[level], message=self.format(record))
        try:
            if threading_is_loop(self.loop):
                self.ls.window_log_message(params)
            else:
                self.loop.call_soon_threadsafe(self.ls.window_log_message, params)
        except Exception:
            self.handleError(record)


def threading_is_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_client_log = ClientLogHandler(server)
_client_log.setFormatter(logging.Formatter("%(name)s: %(message)s"))


def _drop_expected_request_errors(record: logging.LogRecord) -> bool:
    """A request refused with a JSON-RPC error is an answer, not a daemon fault: no traceback.

    pygls also logs a traceback when a message's params do not fit their LSP type; the protocol
    answers (or logs) that in one line (see :mod:`deepdive.daemon.jsonrpc`).
    """
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(record.msg, str) and record.msg.startswith("Unable to deserialize message"):
        return False
    return not isinstance(exc, JsonRpcException)


def _kill_jobs_now(ls: DeepdiveServer) -> None:
    """Last resort when the client vanished without `shutdown`: no job outlives the daemon."""
    if ls.jobs is not None:
        ls.jobs.kill_all_now("the Deepdive daemon exited")


def serve(log_level: str = "INFO") -> int:
    """Run the daemon on stdin/stdout until the client sends `exit` or closes the pipe.

    Returns the exit status: 0 after `shutdown` and `exit` or when the client closes the pipe, 1 for
    `exit` without `shutdown`, 3 when the client's message stream is broken (see
    :mod:`deepdive.daemon.framing`), so that the editor restarts the daemon.
    """
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    if os.environ.get("DEEPDIVE_CLIENT"):
        # An editor shows stderr as errors and gets INFO through window/logMessage already.
        stderr.setLevel(logging.WARNING)
    root = logging.getLogger("deepdive")
    root.setLevel(log_level)
    root.addHandler(stderr)
    root.addHandler(_client_log)
    root.propagate = False
    pygls_stderr = logging.StreamHandler(sys.stderr)
    pygls_stderr.setFormatter(fmt)
    pygls_stderr.addFilter(_drop_expected_request_errors)  # handler filters see the children's records
    pygls_log = logging.getLogger("pygls")
    pygls_log.setLevel(logging.WARNING)
    pygls_log.addHandler(pygls_stderr)
    pygls_log.propagate = False

    signal.signal(signal.SIGTERM, lambda *_: (_kill_jobs_now(server), os._exit(143)))
    try:
        return serve_stdio(server.protocol, wind_down=server.stop_probes)
    finally:
        server.shutdown()
        _kill_jobs_now(server)
