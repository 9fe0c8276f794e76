"""The tour's deployment step: a trained model exported, its runtime chosen, served with dynamic batching.

The digits CNN (``server/examples/digits_cnn.py``) is trained briefly and exported in every form, each
checked against the eager model (``deepdive deploy export``); ``deepdive deploy bench`` measures the forms
on this CPU and saves its choice; ``deepdive deploy serve`` serves the choice with a token; Triton's own
client (``tritonclient.http``) checks health and metadata and sends an inference with binary data (compared
with what the served form answers for that row in this process); 32
concurrent clients then show the dynamic batcher forming batches (read back from the server's Prometheus
``/metrics``); ``deepdive deploy triton`` writes a Triton model repository. Everything runs as the
``deepdive`` command a user types.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from rich.console import Console


async def _run(console: Console, args: list[str], cwd: Path, env: dict[str, str], show: int = 12) -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "deepdive", *args, cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    for line in lines[-show:]:
        console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    return proc.returncode or 0


async def deploy_step(repo: Path, workspace: Path, env: dict[str, str], console: Console) -> int:
    """Run the step; 0 when every part did what it says, 1 (after saying why) otherwise."""
    script = repo / "server" / "examples" / "digits_cnn.py"
    model = workspace / "digits_cnn.pt"
    env = {**env, "OMP_NUM_THREADS": "1"}
    trained = await asyncio.create_subprocess_exec(sys.executable, str(script), "--epochs", "2", "--save", str(model),
                                                   cwd=workspace, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await trained.communicate()
    if trained.returncode != 0 or not model.is_file():
        console.print(f"[red]training the digits CNN failed (exit code {trained.returncode})")
        return 1
    console.print(f"trained {model.name}: {out.decode().strip().splitlines()[-1]}")
    folder = workspace / "deploy" / "digits_cnn"
    console.print("[bold]deepdive deploy export[/bold] (every form, each checked against the eager model):")
    if await _run(console, ["deploy", "export", str(script), "--model", str(model), "--out", str(folder)],
                  workspace, env) != 0:
        console.print("[red]export failed")
        return 1
    console.print("[bold]deepdive deploy bench[/bold] (each runtime measured here, the fastest within tolerance saved):")
    if await _run(console, ["deploy", "bench", str(folder), "--batch-sizes", "1,8,32", "--threads", "1",
                            "--budget-s", "1"], workspace, env, show=14) != 0:
        console.print("[red]deploy bench failed")
        return 1
    token = secrets.token_urlsafe(16)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deepdive", "deploy", "serve", str(folder), "--port", "0", "--max-batch", "32",
        "--preferred", "8,16,32", "--max-queue-delay-us", "2000", "--threads-per-instance", "1",
        cwd=workspace, env={**env, "DEEPDIVE_DEPLOY_TOKEN": token}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        url = None
        assert server.stdout is not None
        while url is None:
            line = (await asyncio.wait_for(server.stdout.readline(), timeout=120)).decode()
            if not line:
                console.print("[red]the server exited before serving")
                return 1
            console.print(f"  {line.rstrip()}", highlight=False, markup=False, soft_wrap=True)
            found = re.search(r"serving \S+ .* at (http://[^/\s]+)", line)
            url = found.group(1) if found else None
        for _ in range(2):  # the batching and metrics lines
            console.print(f"  {(await server.stdout.readline()).decode().rstrip()}", highlight=False, markup=False,
                          soft_wrap=True)
        checked = await asyncio.get_running_loop().run_in_executor(None, _client_checks, url, token, folder)
        for line in checked["lines"]:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
        if not checked["ok"]:
            console.print("[red]the server's answers did not match the model's")
            return 1
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)  # graceful: in-flight requests finish
            try:
                await asyncio.wait_for(server.wait(), timeout=30)
            except asyncio.TimeoutError:
                server.kill()
    console.print("[bold]deepdive deploy triton[/bold] (a Triton model repository; the written model run as Triton's backend would, checked against the config):")
    if await _run(console, ["deploy", "triton", str(folder), "--repo", str(workspace / "triton-models")],
                  workspace, env, show=6) != 0:
        console.print("[red]deploy triton failed")
        return 1
    return 0


def _client_checks(url: str, token: str, folder: Path) -> dict[str, Any]:
    """tritonclient against the server: health, metadata, one binary-data inference checked against the served
    form's own output (and its agreement with the eager model); then 32 concurrent clients, each answer checked
    against its own row, and the batch sizes the server formed (from its /metrics)."""
    import numpy as np
    import torch
    import tritonclient.http as httpclient

    from deepdive.deploy.choose import open_choice
    from deepdive.deploy.manifest import read

    manifest = read(folder)
    headers = {"Authorization": f"Bearer {token}"}
    host = url.removeprefix("http://")
    rows = manifest.example_rows(folder)["input__0"]
    # what the served form itself answers for each row (deploy bench's choice: int8 differs from eager by
    # design, within the tolerance it was chosen under), and the eager model's classes for the agreement
    truth = open_choice(folder, manifest, threads=1).run([rows])[0]
    eager = torch.load(folder / manifest.forms["eager"]["file"], weights_only=False).eval()
    with torch.inference_mode():
        eager_classes = eager(torch.from_numpy(rows)).numpy().argmax(1)
    lines, worst = [], 0.0
    client = httpclient.InferenceServerClient(host, concurrency=32)
    live = client.is_server_live(headers=headers) and client.is_model_ready(manifest.name, headers=headers)
    meta = client.get_model_metadata(manifest.name, headers=headers)
    lines.append(f"tritonclient: live and ready {live}; model {meta['name']} inputs "
                 f"{[(t['name'], t['datatype'], t['shape']) for t in meta['inputs']]}")

    def request(i: int) -> list:
        x = httpclient.InferInput("input__0", [1, *rows.shape[1:]], "FP32")
        x.set_data_from_numpy(rows[i % len(rows)][None], binary_data=True)
        return [x]

    def diff(i: int, out: Any) -> float:
        return float(np.max(np.abs(out.as_numpy("output__0")[0] - truth[i % len(rows)])))

    wanted = [httpclient.InferRequestedOutput("output__0", binary_data=True)]
    worst = diff(0, client.infer(manifest.name, request(0), outputs=wanted, headers=headers))
    lines.append(f"one inference with binary data: largest difference from the served form's own output {worst:.2e}; "
                 f"the served form ({manifest.choice['label'] if manifest.choice else 'eager'}) agrees with the eager "
                 f"model's class on {100 * float((truth.argmax(1) == eager_classes).mean()):.1f} % of the "
                 f"{len(rows)} example rows")
    diffs = asyncio.run(_concurrent(host, manifest.name, rows, truth, headers, clients=32, requests=640))
    import urllib.request

    request = urllib.request.Request(f"{url}/metrics", headers=headers)
    text = urllib.request.urlopen(request, timeout=10).read().decode()
    total = re.search(r"^deepdive_serve_batch_size_sum\{[^}]*\} (\S+)", text, re.M)
    count = re.search(r"^deepdive_serve_batch_size_count\{[^}]*\} (\S+)", text, re.M)
    mean = float(total.group(1)) / float(count.group(1)) if total and count and float(count.group(1)) else 0.0
    lines.append(f"640 requests from 32 concurrent clients: each answer matches its own request (largest difference "
                 f"{max(diffs):.2e}); the batcher ran {int(float(count.group(1))) if count else 0} batches, "
                 f"{mean:.1f} requests a batch on average (from /metrics)")
    client.close()
    return {"ok": bool(live) and max(diffs + [worst]) < 1e-3, "lines": lines}


async def _concurrent(host: str, name: str, rows: Any, truth: Any, headers: dict[str, str], *, clients: int,
                      requests: int) -> list[float]:
    """``clients`` closed-loop clients (tritonclient's asyncio client), ``requests`` in all; each answer's largest
    difference from the eager model's output for its own row."""
    import numpy as np
    import tritonclient.http as httpclient
    import tritonclient.http.aio as aioclient

    client = aioclient.InferenceServerClient(host, conn_limit=clients)
    counter = iter(range(requests))
    diffs: list[float] = []

    async def one_client() -> None:
        for i in counter:
            x = httpclient.InferInput("input__0", [1, *rows.shape[1:]], "FP32")
            x.set_data_from_numpy(rows[i % len(rows)][None], binary_data=True)
            out = await client.infer(name, [x], outputs=[httpclient.InferRequestedOutput("output__0", binary_data=True)],
                                     headers=headers)
            diffs.append(float(np.max(np.abs(out.as_numpy("output__0")[0] - truth[i % len(rows)]))))

    try:
        await asyncio.gather(*(one_client() for _ in range(clients)))
    finally:
        await client.close()
    return diffs
