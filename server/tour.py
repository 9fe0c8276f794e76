"""`make demo`: the end-to-end tour of what Deepdive does today, offline, on the CPU.

It drives the daemon exactly as the editor does (an LSP client over stdio) and prints what the
editor would show. Each capability adds its step here.

    python -m deepdive.tour [--repo PATH] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule

from deepdive.lspclient import DaemonClient
from deepdive.protocol import (
    DOCTOR, GENERATE, HUB, JOBS_EVENT, JOBS_LIST, JOBS_START, VERSION, DoctorParams, GenerateParams, GeneratePartial,
    JobEvent, JobListParams, JobStartParams, from_wire,
)
from deepdive.report import print_deep, print_report
from deepdive.tour_deploy import deploy_step
from deepdive.tour_diagnose import diagnose_step, watch_diagnostics

console = Console()

# The sentence the tour starts from: the digits classifier it trains later, written by the builtin generator.
PROMPT = "a 2-layer MLP classifier for the scikit-learn digits, trained with the deepdive engine"


def step(n: int, title: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{n}. {title}", align="left"))


async def tour(repo: Path, seconds: float, epochs: int, trials: int) -> int:
    workspace = Path(tempfile.mkdtemp(prefix="deepdive-tour-"))
    step(1, "Start the daemon the way the editor does (LSP over stdio)")
    t0 = time.perf_counter()
    client = DaemonClient()
    published = watch_diagnostics(client)
    await client.start_daemon()
    await client.initialize_daemon(str(workspace))
    init_ms = (time.perf_counter() - t0) * 1e3
    version = await client.request(VERSION)
    console.print(f"deepdive {version.version} daemon, pid {version.pid}, answered `initialize` "
                  f"{init_ms:.0f} ms after spawn (it never imports torch)")
    try:
        step(2, "Write the training script from a sentence (deepdive/generate), checked by running it")
        script = await _generate(client, workspace)
        if script is None:
            return 1

        step(3, "Environment report (deepdive/doctor)")
        report = await client.request(DOCTOR, DoctorParams())
        print_report(report, console)

        step(4, "Deep check as a job: torch imported in a subprocess, matmul GFLOP/s, progress streamed")
        progress = Progress(TextColumn("[bold]deep check"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            TextColumn("{task.description}"), TimeElapsedColumn(), console=console)
        bar = progress.add_task("starting", total=1.0)

        def on_event(event: JobEvent) -> None:
            if event.type == "progress" and event.progress is not None:
                progress.update(bar, completed=event.progress.fraction or 0.0,
                                description=event.progress.message or "")
            elif event.type == "output" and event.lines:
                for line in event.lines:
                    progress.console.print(f"  [dim]│[/dim] {line.text}", highlight=False)

        client.on(JOBS_EVENT.method, on_event)
        with progress:
            job = await client.request(
                JOBS_START, JobStartParams(kind="doctor-deep", options={"seconds": seconds, "size": 1024})
            )
            done = await client.wait_for(
                JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", timeout=600
            )
        final = done.job
        print_deep({"job": final.id, "state": final.state, "reason": final.reason, "result": final.result}, console)

        step(5, "Job history (deepdive/jobs/list, kept in SQLite)")
        for past in (await client.request(JOBS_LIST, JobListParams(limit=5))).jobs:
            took = f"{past.ended_at - past.started_at:.1f} s" if past.ended_at and past.started_at else "-"
            console.print(f"  {past.id}  {past.title:<24} {past.state:<10} {took}")
        console.print(f"  records: {report.state_dir}/state.db")
        step(6, f"Train the generated {script.name} through the engine: auto precision, 2-process DDP over gloo "
                "(deepdive train), streaming live to the daemon's telemetry hub")
        hub = await client.request(HUB)
        verdicts: list[dict] = []
        watcher = asyncio.ensure_future(_watch_verdicts(hub.stream_url, verdicts)) if hub.running else None
        if hub.running:
            console.print(f"live telemetry: {hub.stream_url.split('?')[0]} (dashboard page: "
                          f"{hub.url.replace('ws://', 'http://')}/?token=…)")
        else:
            console.print(f"[yellow]no telemetry hub: {hub.reason}")
        env = {**os.environ, "DEEPDIVE_HOME": str(workspace / ".deepdive")}
        if hub.running:
            env["DEEPDIVE_HUB"] = hub.ingest_url
        trained = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deepdive", "train", str(script), "--nproc", "2", "--",
            "--epochs", str(epochs), "--precision", "auto", cwd=workspace, env=env,
        )
        await trained.wait()
        await asyncio.sleep(1.5)  # the last samples and the verdict after them
        if watcher is not None:
            watcher.cancel()
        if trained.returncode != 0:
            console.print(f"[red]training failed (exit code {trained.returncode})")
            return 1
        if verdicts:
            last = verdicts[-1]
            console.print(f"[bold]verdict[/bold] ({last['kind']}): {last['sentence']}  [dim]fix: {last['fix']}")
        # `deepdive train` typed in the workspace records its job in the workspace's store, which the
        # daemon's Jobs list reads (a plain `python train.py` there would be listed as a terminal run)
        for past in (await client.request(JOBS_LIST, JobListParams(limit=10))).jobs:
            if past.kind in ("train", "terminal"):
                console.print(f"  in the editor's Jobs view: {past.title}  {past.state}  (kind {past.kind})")
                break

        step(7, f"Tune the digits example's suggest() hyperparameters: {trials} trials, the defaults (TPE, "
                "successive halving, patience 2), live in the dashboard; the top 2 re-trained with 2 fresh "
                "seeds each, the best mean applied")
        tunable = workspace / "digits.py"
        tunable.write_text((repo / "server" / "examples" / "digits.py").read_text(encoding="utf-8"), encoding="utf-8")
        tuned = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deepdive", "tune", str(tunable), "--trials", str(trials), "--parallel", "2",
            "--metric", "accuracy", "--direction", "maximize", "--seed", "0", "--confirm", "2", "--confirm-seeds", "2",
            "--apply", "--", "--epochs", "4",
            cwd=workspace, env=env,
        )
        await tuned.wait()
        if tuned.returncode != 0:
            console.print(f"[red]the study failed (exit code {tuned.returncode})")
            return 1
        applied = [line.strip() for line in tunable.read_text(encoding="utf-8").splitlines() if "run.suggest(\"" in line]
        console.print("suggest() defaults now:")
        for line in applied:
            console.print(f"  [dim]{line}[/dim]", highlight=False)

        step(8, "Compress the tuned digits model: prune half the neurons, distil from the original, int8; "
                "measured on this CPU")
        model = workspace / "digits.pt"
        trained = await asyncio.create_subprocess_exec(
            sys.executable, str(tunable), "--epochs", "10", "--precision", "fp32", "--save", str(model),
            cwd=workspace, env=env,
        )
        await trained.wait()
        if trained.returncode != 0 or not model.is_file():
            console.print(f"[red]training the tuned model failed (exit code {trained.returncode})")
            return 1
        compressed = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deepdive", "compress", str(model), "--eval",
            str(repo / "server" / "examples" / "digits_eval.py"), "--prune", "0.5", "--distill", "--quantize", "int8",
            cwd=workspace, env=env,
        )
        await compressed.wait()
        if compressed.returncode != 0:
            console.print(f"[red]compression failed (exit code {compressed.returncode})")
            return 1

        step(9, "Preemption: train with checkpoints under `deepdive train --max-restarts 1`, SIGTERM the worker "
                "midway; it checkpoints, exits 75, torchrun restarts it and it resumes at the next batch")
        if await _preemption(tunable, workspace, env) != 0:
            return 1

        step(10, "FSDP2: a transformer on the digits (its layers in an nn.ModuleList) built on the meta device and "
                 "sharded layer by layer on 2 processes, a sharded checkpoint each epoch, resumed on 1 process")
        if await _fsdp(repo, workspace, env) != 0:
            return 1

        step(11, "Performance diagnostics: the static rules on open, a measured diagnosis that promotes a finding "
                 "with its share of the step, and its fix proven on a re-run (Apply and measure)")
        if await diagnose_step(client, published, repo, workspace, console) != 0:
            return 1

        step(12, "Deploy: export every form (checked against eager), choose the runtime by measurement, serve it "
                 "with dynamic batching on the Open Inference Protocol (Triton's client), write a Triton repository")
        if await deploy_step(repo, workspace, env, console) != 0:
            return 1
    finally:
        code = await client.close()
        console.print(f"daemon shut down cleanly (exit code {code})")

    step(13, "The VS Code extension")
    vsix = sorted(repo.glob("deepdive-*.vsix"))
    if vsix:
        console.print(f"packaged: {vsix[-1]}")
        console.print(f"install:  code --install-extension {vsix[-1].name}   (or Extensions view → … → Install from VSIX)")
    else:
        console.print("[yellow]no .vsix found: run `make vsix`")
        return 1
    return 0 if final.state == "succeeded" else 1


async def _preemption(script: Path, workspace: Path, env: dict[str, str]) -> int:
    """Train the same run twice, once interrupted by a real SIGTERM to the worker: same final weights."""
    import re
    import signal

    import psutil

    from deepdive.engine.ckpt import Store

    args = ["--epochs", "20", "--batch-size", "16", "--precision", "fp32", "--seed", "0"]
    steady = await asyncio.create_subprocess_exec(
        sys.executable, str(script), *args, "--ckpt", str(workspace / "ckpt-steady"), cwd=workspace, env=env,
        stdout=asyncio.subprocess.DEVNULL)
    await steady.wait()
    store_dir = workspace / "ckpt"
    trained = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deepdive", "train", str(script), "--nproc", "1", "--max-restarts", "1",
        "--checkpoint-dir", str(store_dir), "--", *args, cwd=workspace, env=env, stdout=asyncio.subprocess.DEVNULL)

    def latest_step() -> int:
        names = [m.name for m in (store_dir / "manifests").glob("step-*.json")] if store_dir.is_dir() else []
        return max((int(re.sub(r"\D", "", n)) for n in names), default=-1)

    worker = None
    while trained.returncode is None and latest_step() < 6 * 90:  # 90 steps an epoch: stop during the 7th
        await asyncio.sleep(0.02)
    if trained.returncode is None:
        for child in psutil.Process(trained.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                line = " ".join(child.cmdline())
                if str(script) in line and "torch.distributed" not in line:
                    worker = child
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            console.print(f"SIGTERM → worker pid {worker.pid} (the last checkpoint was step {latest_step()})")
    stopped_at = None
    while trained.returncode is None and stopped_at is None:
        with contextlib.suppress(Exception):
            stopped_at = next((c.step for c in Store(store_dir, create=False).list()
                               if str(c.meta.get("reason", "")).startswith("preempted")), None)
        await asyncio.sleep(0.05)
    await trained.wait()
    if steady.returncode != 0 or trained.returncode != 0:
        console.print(f"[red]training failed (exit codes {steady.returncode}, {trained.returncode})")
        return 1
    if worker is None or stopped_at is None:
        console.print("[yellow]the run ended before the signal reached it: nothing was interrupted")
        return 1
    console.print(f"the worker finished step {stopped_at}, saved it and exited 75; torchrun restarted it; it "
                  f"resumed at step {stopped_at + 1}")
    a, b = Store(workspace / "ckpt-steady", create=False), Store(store_dir, create=False)
    weights = [{e["path"]: e["chunks"] for e in s.manifest("latest")["tensors"] if e["path"].startswith("model.")}
               for s in (a, b)]
    accuracy = [s.list()[-1].metrics.get("accuracy") for s in (a, b)]
    same = weights[0] == weights[1]
    verdict = "bitwise identical (the same chunk hashes)" if same else "[red]DIFFERENT[/red]"
    console.print(f"final held-out accuracy: uninterrupted {accuracy[0]:.4f}, interrupted + resumed {accuracy[1]:.4f}; "
                  f"final weights {verdict}")
    listing = await asyncio.create_subprocess_exec(sys.executable, "-m", "deepdive", "ckpt", "ls", str(store_dir),
                                                   cwd=workspace, env=env)
    await listing.wait()
    return 0 if same and accuracy[0] == accuracy[1] else 1


async def _fsdp(repo: Path, workspace: Path, env: dict[str, str]) -> int:
    """Train one epoch under FSDP2 at 2 processes, then resume its sharded checkpoint at 1 for the next."""
    script = repo / "server" / "examples" / "digits_fsdp.py"
    for nproc, epochs in ((2, 2), (1, 4)):
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "deepdive", "train", str(script), "--nproc", str(nproc), "--checkpoint-dir",
            str(workspace / "ckpt-fsdp"), "--", "--epochs", str(epochs), cwd=workspace, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await done.communicate()
        lines = out.decode(errors="replace").splitlines()
        for line in lines:
            if line.startswith(("strategy:", "resumed after", "done:")):
                console.print(f"  {nproc} process{'es' if nproc > 1 else ''}: {line}", highlight=False)
        if done.returncode != 0:
            console.print(f"[red]FSDP training at {nproc} processes failed (exit code {done.returncode}):")
            console.print("\n".join(lines[-20:]), markup=False)
            return 1
    return 0


async def _generate(client: DaemonClient, workspace: Path) -> Path | None:
    """Generate the digits script over LSP as the editor does: partial results show the checks as they pass."""
    from lsprotocol import types

    console.print(f'prompt: "{PROMPT}"')
    seen = 0

    def on_progress(params: types.ProgressParams) -> None:
        nonlocal seen
        if params.token != "tour-generate":
            return
        part = from_wire(params.value, GeneratePartial)
        if part.kind == "text":
            seen += len(part.text or "")
        elif part.kind == "phase":
            console.print(f"  [dim]{part.text}…[/dim] ({seen} characters streamed)" if part.text == "verifying"
                          else f"  [dim]{part.text}…[/dim]")
        elif part.kind == "check" and part.check is not None:
            c = part.check
            mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
            console.print(f"  {mark} {c.name:<10} {c.detail[:90]}  [dim]{c.seconds or 0:.1f} s[/dim]", highlight=False)

    client.on(types.PROGRESS, on_progress)
    result = await client.request(GENERATE, GenerateParams(prompt=PROMPT, partial_result_token="tour-generate"),
                                  timeout=300)
    intent = result.intent
    console.print(f"understood as: {intent['task']}, {intent['architecture']}, dataset {intent['dataset']}, "
                  f"{intent['num_classes']} classes, {intent['layers']} layers, engine: {intent['use_engine']}")
    if not result.verified:
        console.print(f"[red]the generated program did not pass verification: {result.message}")
        return None
    script = workspace / (result.filename or "digits_mlp.py")
    script.write_text(result.code, encoding="utf-8")
    console.print(f"verified in {result.seconds:.1f} s → {script} ({len(result.code.splitlines())} lines)")
    return script


async def _watch_verdicts(stream_url: str, into: list[dict]) -> None:
    """Collect the hub's live verdicts, as the dashboard shows them."""
    import json

    from websockets.asyncio.client import connect

    async with connect(stream_url, max_size=2**24) as ws:
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "verdict":
                into.append(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepdive.tour")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="repository root (where the .vsix is)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per deep-check measurement")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the digits training")
    parser.add_argument("--trials", type=int, default=20, help="trials of the hyperparameter search")
    args = parser.parse_args(argv)
    return asyncio.run(tour(args.repo.resolve(), args.seconds, args.epochs, args.trials))


if __name__ == "__main__":
    sys.exit(main())
