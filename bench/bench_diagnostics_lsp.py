"""Diagnostics in the editor: how long a save takes to come back as diagnostics, and whether the daemon stays
responsive while a measured diagnosis runs.

The file: ``tests.daemon.test_diagnostics_lsp.long_training_file(2000)``, a realistic training module (imports, then
a conv net class, its training function with a DataLoader and ``.item()`` per step, and an evaluation function)
repeated with numbered names to 2,000+ lines; every rule runs on it and finds something in each block.

Figures (one JSON object per line):

* ``analyze_2000_lines_p50`` (wall) and ``analyze_2000_lines_cpu_p50`` (CPU time of the thread):
  :func:`deepdive.diagnose.rules.analyze` on that file in this process, the work the daemon's analysis process
  does on each save (on a shared machine the wall time is the CPU time plus the waits for a core);
* ``save_to_publish_p50/p95``: a real daemon over stdio; after an edit (``didChange``), the time from sending
  ``textDocument/didSave`` to the ``textDocument/publishDiagnostics`` of that version (goal p95 ≤ 200 ms);
  ``unchanged_save_to_publish_p50``: a second save with no edit between (the analysis is reused);
* ``version_rtt_p99_during_analysis``: ``deepdive/version`` round trips while the file is edited and saved every
  50 ms (the daemon analyses it back to back, in its worker process);
* ``version_rtt_p99_idle`` and ``version_rtt_p99_during_diagnose``: ``deepdive/version`` round trips with nothing
  running, then while a ``diagnose`` job measures ``server/examples/digits.py`` (copied to a temporary workspace).

Usage: python bench/bench_diagnostics_lsp.py [--saves 30] [--calls 300] [--lines 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepdive.diagnose.rules import analyze  # noqa: E402
from deepdive.lspclient import DaemonClient  # noqa: E402
from deepdive.protocol import JOBS_EVENT, JOBS_START, VERSION, JobStartParams  # noqa: E402
from tests.daemon.test_diagnostics_lsp import (  # noqa: E402
    PUBLISH, editor, long_training_file, open_file, published, replace_text, save,
)


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"bench": "diagnostics_lsp", "metric": metric, "value": round(value, 3), "unit": unit,
                      **extra}), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def analyze_in_process(text: str, runs: int) -> None:
    times, cpu = [], []
    findings = 0
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        findings = len(analyze(text, "long_train.py"))
        times.append((time.perf_counter() - started) * 1e3)
        cpu.append((time.thread_time() - started_cpu) * 1e3)
    emit("analyze_2000_lines_p50", statistics.median(times), "ms", runs=runs, lines=text.count("\n"),
         findings=findings)
    emit("analyze_2000_lines_cpu_p50", statistics.median(cpu), "ms", runs=runs, lines=text.count("\n"))


async def save_latency(workspace: Path, text: str, saves: int, calls: int) -> None:
    """Each save follows an edit (a comment line added at the end), as when the user types and saves: the daemon
    analyses the new text. A save with nothing changed since the last analysis is timed too (it only reads the
    measured report again)."""
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "long_train.py", text)
        first = await published(client, uri, version=1, timeout=120)
        edited, unchanged = [], []
        for i in range(saves):
            version = i + 2
            replace_text(client, uri, f"{text}# edit {i}\n", version)
            mark = len(client.notifications[PUBLISH])
            started = time.perf_counter()
            save(client, uri)
            await published(client, uri, after=mark, version=version, timeout=120)
            edited.append((time.perf_counter() - started) * 1e3)
            mark = len(client.notifications[PUBLISH])
            started = time.perf_counter()
            save(client, uri)
            await published(client, uri, after=mark, version=version, timeout=120)
            unchanged.append((time.perf_counter() - started) * 1e3)
        # deepdive/version while the daemon analyses the file again and again (an edit and a save every 50 ms)
        pinging = True

        async def keep_editing() -> None:
            version = saves + 2
            while pinging:
                replace_text(client, uri, f"{text}# busy {version}\n", version)
                save(client, uri)
                version += 1
                await asyncio.sleep(0.05)

        editing = asyncio.ensure_future(keep_editing())
        await asyncio.sleep(0.3)
        busy = await version_rtts(client, calls)
        pinging = False
        await editing
    lines = text.count("\n")
    emit("version_rtt_p99_during_analysis", percentile(busy, 99), "ms", calls=len(busy), lines=lines)
    emit("save_to_publish_p50", percentile(edited, 50), "ms", saves=saves, lines=lines,
         diagnostics=len(first.diagnostics))
    emit("save_to_publish_p95", percentile(edited, 95), "ms", saves=saves, lines=lines, goal=200)
    emit("unchanged_save_to_publish_p50", percentile(unchanged, 50), "ms", saves=saves, lines=lines)


async def version_rtts(client: DaemonClient, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        await client.request(VERSION, timeout=30)
        out.append((time.perf_counter() - started) * 1e3)
        await asyncio.sleep(0.005)
    return out


async def responsiveness(workspace: Path, calls: int) -> None:
    shutil.copy(ROOT / "server" / "examples" / "digits.py", workspace / "digits.py")
    async with DaemonClient.spawn(str(workspace)) as client:
        await client.request(VERSION)
        idle = await version_rtts(client, calls)
        emit("version_rtt_p99_idle", percentile(idle, 99), "ms", calls=calls)
        try:
            job = await client.request(JOBS_START, JobStartParams(kind="diagnose", options={"path": "digits.py"}))
        except Exception as exc:  # the job kind is not there (or refused the options): say so, measure nothing
            print(json.dumps({"bench": "diagnostics_lsp", "metric": "version_rtt_p99_during_diagnose",
                              "value": None, "unit": "ms", "not_measured": f"{type(exc).__name__}: {exc}"}),
                  flush=True)
            return
        busy: list[float] = []
        started = time.perf_counter()
        while not any(e.job_id == job.id and e.type == "finished" for e in client.notifications[JOBS_EVENT.method]):
            busy.extend(await version_rtts(client, 20))
            if time.perf_counter() - started > 300:
                break
        done = next((e for e in client.notifications[JOBS_EVENT.method]
                     if e.job_id == job.id and e.type == "finished"), None)
        state = done.job.state if done is not None and done.job is not None else "still running after 300 s"
    emit("version_rtt_p99_during_diagnose", percentile(busy, 99), "ms", calls=len(busy),
         baseline=round(percentile(idle, 99), 3), ratio=round(percentile(busy, 99) / percentile(idle, 99), 2),
         job=state, job_s=round(time.perf_counter() - started, 1))


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--lines", type=int, default=2000)
    args = parser.parse_args()
    text = long_training_file(args.lines)
    analyze_in_process(text, 5)
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "edit", Path(tmp) / "diagnose"
        first.mkdir()
        second.mkdir()
        await save_latency(first, text, args.saves, args.calls)
        await responsiveness(second, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
