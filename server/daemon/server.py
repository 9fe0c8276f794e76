"""The Deepdive daemon: a pygls 2 language server over stdio.

Handlers are thin: each parses its params against :mod:`deepdive.protocol`, calls into a feature
module (doctor, jobs) and returns the wire form. Anything slow runs in a subprocess (the torch probe,
every job) or a worker thread (NVML), so the event loop answers requests in milliseconds while jobs
stream output. This process never imports torch, transformers or optuna.

This module holds the one :data:`server`, the :func:`request` decorator that registers a
``deepdive/*`` method on it, every handler, and :func:`serve`; the server object's state and
notifications are in :mod:`deepdive.daemon.language_server`, the log records sent to the client in
:mod:`deepdive.daemon.client_log`.
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
from typing import Any, Awaitable, Callable
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams

from deepdive import __version__
from deepdive.daemon import checkpoints
from deepdive.daemon.client_log import ClientLogHandler, drop_expected_request_errors
from deepdive.daemon.framing import serve_stdio
from deepdive.daemon.generate import GenerateRefused
from deepdive.daemon.language_server import DeepdiveServer
from deepdive.daemon.terminal_runs import NOT_CANCELLABLE
from deepdive.jobs.kinds import JobRejected
from deepdive.jobs.manager import JobManager
from deepdive.protocol import (
    DOCTOR, GENERATE, HUB, JOBS_CANCEL, JOBS_KINDS, JOBS_LIST, JOBS_LOG, JOBS_START, MODELS_LIST, MODELS_SET_DEFAULT,
    PROTOCOL_VERSION, TUNE_APPLY, VERSION, DoctorParams, GenerateParams, HubInfo, InvalidPayload, JobIdParams,
    JobKindList, JobList, JobListParams, JobLog, JobStartParams, ModelList, ModelListParams, ModelSetDefaultParams,
    Request, TuneApplyParams, TuneApplyResult, VersionResult, from_wire, to_wire,
)

log = logging.getLogger("deepdive.daemon")

_REQUEST_FAILED = -32001  # JSON-RPC server-error range: the request was valid but could not be done


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
    ls.diagnostics.configure(options.get("diagnostics"))
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
    ls.diagnostics.close()  # the analysis worker process
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


# ---------------------------------------------------------------------------------------------
# Performance diagnostics of open Python files (deepdive.daemon.diagnostics)
# ---------------------------------------------------------------------------------------------


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def on_did_open(ls: DeepdiveServer, params: types.DidOpenTextDocumentParams) -> None:
    """textDocument/didOpen: analyse the file and publish its diagnostics."""
    ls.diagnostics.opened(params)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def on_did_change(ls: DeepdiveServer, params: types.DidChangeTextDocumentParams) -> None:
    """textDocument/didChange: analyse again once typing pauses (pygls has already applied the change)."""
    ls.diagnostics.changed(params)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
def on_did_save(ls: DeepdiveServer, params: types.DidSaveTextDocumentParams) -> None:
    """textDocument/didSave: analyse now and read the script's measured report again."""
    ls.diagnostics.saved(params)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def on_did_close(ls: DeepdiveServer, params: types.DidCloseTextDocumentParams) -> None:
    """textDocument/didClose: clear the file's diagnostics."""
    ls.diagnostics.closed(params)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def on_did_change_configuration(ls: DeepdiveServer, params: types.DidChangeConfigurationParams) -> None:
    """workspace/didChangeConfiguration: ``deepdive.diagnostics`` changed; open files are published again."""
    ls.diagnostics.configuration_changed(params)


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
async def on_code_action(ls: DeepdiveServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """textDocument/codeAction: fix, ignore on this line, and (trusted) apply and measure."""
    return await ls.diagnostics.code_actions(params)


@server.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=False))
async def on_code_lens(ls: DeepdiveServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    """textDocument/codeLens: "Diagnose performance" above the first training loop (trusted workspaces)."""
    return await ls.diagnostics.code_lenses(params)


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


_client_log = ClientLogHandler(server)
_client_log.setFormatter(logging.Formatter("%(name)s: %(message)s"))



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
    pygls_stderr.addFilter(drop_expected_request_errors)  # handler filters see the children's records
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
        server.diagnostics.close()
