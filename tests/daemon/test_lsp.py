"""The daemon driven over stdio by pygls's own client, as the editor drives it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcMethodNotFound

from deepdive import __version__
from deepdive.lspclient import DaemonClient
from deepdive.protocol import (
    DOCTOR, JOBS_CANCEL, JOBS_EVENT, JOBS_KINDS, JOBS_LIST, JOBS_LOG, JOBS_START, PROTOCOL_VERSION, VERSION,
    DoctorParams, JobIdParams, JobInfo, JobListParams, JobStartParams,
)
from tests.conftest import pgid_alive, torch_version, write_script

HEAVY_MODULES = ("libtorch", "transformers", "optuna")

SLEEPER = """
import subprocess, sys, time
from deepdive.jobs import events
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("grandchild", child.pid, flush=True)
for i in range(5):
    print(f"line {i}", flush=True)
events.progress(0.5, "half way")
time.sleep(600)
"""


async def test_initialize_advertises_the_server(daemon: DaemonClient):
    info = daemon.initialize_result.server_info
    assert info.name == "deepdive" and info.version == __version__


async def test_version(daemon: DaemonClient):
    result = await daemon.request(VERSION)
    assert result.version == __version__
    assert result.protocol == PROTOCOL_VERSION
    assert result.pid == daemon.process.pid


async def test_daemon_never_loads_torch(daemon: DaemonClient):
    await daemon.request(DOCTOR, DoctorParams())  # the report includes torch's version
    maps = Path(f"/proc/{daemon.process.pid}/maps")
    if not maps.exists():
        pytest.skip("needs /proc to inspect the daemon's loaded libraries")
    loaded = maps.read_text()
    for name in HEAVY_MODULES:
        assert name not in loaded, f"the daemon process loaded {name}"


async def test_doctor_reports_torch_and_why_there_is_no_gpu(daemon: DaemonClient):
    report = await daemon.request(DOCTOR, DoctorParams())
    assert report.torch.installed and report.torch.version == torch_version()
    assert report.python.version
    if report.gpus.available:
        assert report.gpus.devices and report.gpus.driver_version
    else:
        assert report.gpus.reason and not report.gpus.devices
        if not any(Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "/usr/lib64/libnvidia-ml.so.1")):
            assert "NVML library not found" in report.gpus.reason
    names = {p.name: p for p in report.packages}
    assert names["torch"].installed and names["pygls"].installed
    assert report.state_dir and report.state_dir.endswith(".deepdive")


async def test_log_messages_reach_the_client(daemon: DaemonClient):
    assert any("serving" in m.message for m in daemon.log_messages)


async def test_malformed_requests_get_errors_and_the_daemon_stays_up(daemon: DaemonClient):
    with pytest.raises(JsonRpcMethodNotFound):
        await daemon.raw_request("deepdive/no-such-method", {})
    with pytest.raises(JsonRpcInvalidParams, match="params.kind"):
        await daemon.raw_request(JOBS_START.method, {"kind": 42})
    with pytest.raises(JsonRpcInvalidParams, match="extra fields"):
        await daemon.raw_request(DOCTOR.method, {"refresh": True, "nonsense": 1})
    with pytest.raises(JsonRpcInvalidParams, match="must be an object"):
        await daemon.raw_request(JOBS_LIST.method, [1, 2, 3])
    with pytest.raises(JsonRpcException, match="unknown job kind"):
        await daemon.request(JOBS_START, JobStartParams(kind="rm -rf /"))
    with pytest.raises(JsonRpcException, match="option 'seconds'"):
        await daemon.request(JOBS_START, JobStartParams(kind="doctor-deep", options={"seconds": -1}))
    assert (await daemon.request(VERSION)).version == __version__


async def test_job_kinds(daemon: DaemonClient):
    kinds = {k.kind: k for k in (await daemon.request(JOBS_KINDS)).kinds}
    assert not kinds["doctor-deep"].runs_user_code and kinds["script"].runs_user_code


@pytest.mark.slow
async def test_deep_check_job_streams_progress_and_result(daemon: DaemonClient):
    job = await daemon.request(JOBS_START, JobStartParams(kind="doctor-deep", options={"seconds": 0.2, "size": 128}))
    assert job.state == "running" and job.pid
    done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 120)
    assert done.job.state == "succeeded", done.job.reason
    result = done.job.result
    assert result["torch"] == torch_version()
    assert result["matmul"] and all(row["gflops"] > 0 for row in result["matmul"])
    events = [e for e in daemon.notifications[JOBS_EVENT.method] if e.job_id == job.id]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # nothing lost, in order
    kinds = {e.type for e in events}
    assert {"started", "progress", "output", "data", "finished"} <= kinds
    # work-done progress: begin, reports, end on the job's token
    token = f"deepdive-job-{job.id}"
    values = [p.value for p in daemon.progress if p.token == token]
    assert values[0]["kind"] == "begin" and values[0]["cancellable"] is True
    assert values[-1]["kind"] == "end" and "succeeded" in values[-1]["message"]
    log = await daemon.request(JOBS_LOG, JobIdParams(id=job.id))
    assert any("GFLOP/s" in line.text for line in log.lines)


async def test_cancel_kills_the_whole_process_group(daemon: DaemonClient, workspace: Path):
    script = write_script(workspace, "sleeper.py", SLEEPER)
    job = await daemon.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
    said = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and any(
        ln.text.startswith("grandchild") for ln in e.lines or []), 30)  # stdout may trail the events pipe
    grandchild = int(next(ln.text for ln in said.lines if ln.text.startswith("grandchild")).split()[1])
    assert pgid_alive(job.pid) and psutil.pid_exists(grandchild)

    cancelled = await daemon.request(JOBS_CANCEL, JobIdParams(id=job.id))
    assert cancelled.state == "cancelled" and cancelled.reason == "cancelled by the user"
    assert not pgid_alive(job.pid)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    listed = {j.id: j for j in (await daemon.request(JOBS_LIST, JobListParams())).jobs}
    assert listed[job.id].state == "cancelled"


async def test_cancel_from_the_progress_notification(daemon: DaemonClient, workspace: Path):
    script = write_script(workspace, "sleeper.py", SLEEPER)
    job = await daemon.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
    token = f"deepdive-job-{job.id}"
    for _ in range(200):
        if any(p.token == token for p in daemon.progress):
            break
        await asyncio.sleep(0.05)
    daemon.protocol.notify(types.WINDOW_WORK_DONE_PROGRESS_CANCEL, types.WorkDoneProgressCancelParams(token=token))
    done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 30)
    assert done.job.state == "cancelled"
    assert not pgid_alive(job.pid)


async def test_failing_job_is_recorded_with_its_exit_code(daemon: DaemonClient, workspace: Path):
    script = write_script(workspace, "boom.py", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    job = await daemon.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
    done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 30)
    assert done.job.state == "failed" and done.job.exit_code == 3 and done.job.reason == "exit code 3"


async def test_time_limit_kills_the_job(daemon: DaemonClient, workspace: Path):
    script = write_script(workspace, "sleeper.py", SLEEPER)
    job = await daemon.request(JOBS_START, JobStartParams(kind="script", options={"path": script}, timeout_s=1.0))
    done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 30)
    assert done.job.state == "failed" and "time limit" in done.job.reason
    assert not pgid_alive(job.pid)


async def test_memory_limit_kills_the_job(daemon: DaemonClient, workspace: Path):
    script = write_script(
        workspace, "hog.py",
        "import time\nblocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n    time.sleep(0.05)\n",
    )
    job = await daemon.request(
        JOBS_START, JobStartParams(kind="script", options={"path": script}, memory_limit_mib=300)
    )
    done = await daemon.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 60)
    assert done.job.state == "failed" and "memory limit" in done.job.reason


async def test_a_flood_of_output_is_batched_and_accounted_for(daemon: DaemonClient, workspace: Path):
    n = 100_000
    script = write_script(workspace, "chatty.py", f"for i in range({n}):\n    print('x' * 40, i)\n")
    job = await daemon.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
    answered = 0
    while True:  # the daemon keeps answering while the job floods it
        assert (await daemon.request(VERSION, timeout=10)).version == __version__
        answered += 1
        if any(e.job_id == job.id and e.type == "finished" for e in daemon.notifications[JOBS_EVENT.method]):
            break
        await asyncio.sleep(0.01)
    outputs = [e for e in daemon.notifications[JOBS_EVENT.method] if e.job_id == job.id and e.type == "output"]
    received = sum(len(e.lines) for e in outputs)
    dropped = sum(e.dropped_lines or 0 for e in outputs)
    assert received + dropped == n
    assert len(outputs) < n / 50, "lines must arrive in batches"
    assert answered >= 1


async def test_untrusted_workspace_refuses_to_run_its_code(workspace: Path):
    script = write_script(workspace, "hello.py", "print('hi')\n")
    async with DaemonClient.spawn(str(workspace), trusted=False) as client:
        with pytest.raises(JsonRpcException, match="trust this workspace"):
            await client.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
        report = await client.request(DOCTOR, DoctorParams())
        assert not report.state_dir.startswith(str(workspace)), "nothing is written into an untrusted workspace"


async def test_restarted_daemon_lists_past_jobs(workspace: Path):
    script = write_script(workspace, "ok.py", "print('done')\n")
    async with DaemonClient.spawn(str(workspace)) as first:
        job = await first.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
        await first.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 30)
    async with DaemonClient.spawn(str(workspace)) as second:
        jobs = {j.id: j for j in (await second.request(JOBS_LIST, JobListParams())).jobs}
        assert jobs[job.id].state == "succeeded" and jobs[job.id].exit_code == 0
        log = await second.request(JOBS_LOG, JobIdParams(id=job.id))
        assert [ln.text for ln in log.lines] == ["done"]


async def _daemon_running_a_sleeper(workspace: Path) -> tuple[DaemonClient, JobInfo]:
    """A daemon managed by the test itself (not the fixture), with a job that runs until killed."""
    script = write_script(workspace, "sleeper.py", SLEEPER)
    client = DaemonClient()
    await client.start_daemon()
    await client.initialize_daemon(str(workspace))
    job = await client.request(JOBS_START, JobStartParams(kind="script", options={"path": script}))
    await client.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "progress", 30)
    return client, job


async def test_shutdown_and_exit_leave_no_child_process(workspace: Path):
    client, job = await _daemon_running_a_sleeper(workspace)
    daemon_pid = client.process.pid
    children = psutil.Process(daemon_pid).children(recursive=True)
    assert children
    code = await client.close()
    assert code == 0
    assert not psutil.pid_exists(daemon_pid)
    assert not pgid_alive(job.pid)
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


async def test_a_killed_daemon_takes_its_jobs_with_it_and_they_are_marked_lost(workspace: Path):
    client, job = await _daemon_running_a_sleeper(workspace)
    said = await client.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and any(
        ln.text.startswith("grandchild") for ln in e.lines or []), 30)  # stdout may trail the events pipe
    grandchild = psutil.Process(int(next(ln.text for ln in said.lines if ln.text.startswith("grandchild")).split()[1]))
    os.kill(client.process.pid, signal.SIGKILL)
    await client.process.wait()
    await client.stop()
    for _ in range(50):  # no new daemon needed: the job's supervisor stops its whole tree
        try:
            grandchild_gone = grandchild.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            grandchild_gone = True
        if grandchild_gone and not pgid_alive(job.pid):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the job outlived its daemon")
    async with DaemonClient.spawn(str(workspace)) as second:
        jobs = {j.id: j for j in (await second.request(JOBS_LIST, JobListParams())).jobs}
        assert jobs[job.id].state == "lost" and "process that ran it" in jobs[job.id].reason


async def test_no_work_done_progress_for_a_client_that_does_not_declare_it(workspace: Path):
    async with DaemonClient.spawn(str(workspace), work_done_progress=False) as client:
        job = await client.request(JOBS_START, JobStartParams(kind="doctor-deep", options={"seconds": 0.1, "size": 64}))
        done = await client.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 120)
        assert done.job.state == "succeeded"
        assert client.progress == [], "no $/progress without window.workDoneProgress"
        assert any(e.type == "progress" for e in client.notifications[JOBS_EVENT.method]), "job events still flow"
