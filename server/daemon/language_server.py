"""The daemon's language server object (:class:`DeepdiveServer`), apart from the handlers registered on it.

It starts and caches the environment probes, opens the job store and manager for the workspace,
starts the telemetry hub and announces it, tells runs started in a terminal from the daemon's own
jobs, and turns job events into ``deepdive/jobs/event`` notifications and LSP work-done progress.
The diagnostics of open documents are in :mod:`deepdive.daemon.diagnostics`. The handlers and the entry
point are in :mod:`deepdive.daemon.server`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from deepdive import __version__, doctor
from deepdive.daemon.diagnostics import Diagnostics
from deepdive.daemon.jsonrpc import DeepdiveProtocol
from deepdive.daemon.run_progress import training_progress
from deepdive.daemon.terminal_runs import TerminalRuns
from deepdive.jobs.manager import JobManager
from deepdive.jobs.store import JobStore, state_dir
from deepdive.protocol import JOBS_EVENT, TELEMETRY_SUMMARY, DoctorReport, GpuInfo, JobEvent, TorchInfo, to_wire

log = logging.getLogger("deepdive.daemon")


class DeepdiveServer(LanguageServer):
    """The daemon's one language server: what its handlers share, and the notifications it sends.

    It holds the environment probes (cached for the daemon's life), the job store and manager, the
    telemetry service, the runs started in a terminal, and the work-done progress of jobs the client
    watches; the request handlers in :mod:`deepdive.daemon.server` read and drive it.
    """

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
        self.diagnostics = Diagnostics(self)

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
        if event.type == "finished" and event.job is not None and event.job.kind == "diagnose":
            self.diagnostics.reports_changed()  # a new measured report promotes the script's findings

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
