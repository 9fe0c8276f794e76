"""Serving under load, all arms in the same run: `deepdive deploy serve` with dynamic batching on, with it off
(``--no-batching``), and LitServe with its own batching, each serving the same eager model.

Models (real data, trained here, fixed seeds), each exported with ``deepdive.deploy.export`` (eager form):

- ``digits_cnn``: ``server/examples/digits_cnn.py`` trained ``--epochs`` epochs;
- ``polarity_bert``: ``server/examples/polarity_bert.py`` at BERT-mini's shape (4 layers, hidden 256, 4 heads,
  feed-forward 1024; the encoder of ``bench_compress``) trained ``--bert-epochs`` epochs on rt-polarity
  (0: the initial weights, which serve exactly as fast); skipped with a line when the data is absent.

Servers: each arm is its own subprocess on 127.0.0.1 (ours on ``--port 0``, the port read from its first
line; LitServe on a free port), with ``OMP_NUM_THREADS=--threads`` and torch at ``--threads`` threads. The
load generator is this process (asyncio + aiohttp), so no client shares a server's GIL. The same Open
Inference Protocol JSON body (one example row per request, rotating over 16 rows) goes to every arm:
ours at ``/v2/models/NAME/infer``, LitServe at ``/predict`` through a LitAPI that decodes and encodes
that body and concatenates requests into one batch (``max_batch_size``, ``batch_timeout``: the same
max batch and queue delay as ours; one API server, one inference worker, ``fast_queue`` when pyzmq is
installed). Each arm's settings are printed as a ``config`` line.

Load: closed loop: ``C`` clients, each sending its next request when its answer arrives, for
``--duration`` seconds per arm per level (after ``--warmup`` seconds not counted), at concurrency 1, 8, 32
and 64; ``--rounds`` rounds per level, arms alternating (A B C, then C B A) so drifting load on the
machine falls on every arm alike. Figures per model, arm and level: throughput (answered requests/s),
p50 and p99 latency as the client saw it, errors (non-200 answers), mean rows per batch (ours, from its
``/metrics``), and the client's CPU use (near 100 % means the client, not the server, set the pace).
Before the load each arm answers one request checked against the eager model in this process.

Lines with ``baseline``/``ratio`` (and ``against``): batching on vs off, and ours (batching on) vs LitServe,
same level. ``goal`` lines restate the issue's goals, measured: >= 3x throughput at 32 clients with p99 no
worse (batching on vs off); higher throughput and lower p99 than LitServe.

``--target-p99 MS``: ours started with ``--target-p99 MS --clients 32`` (it measures the model and picks max
batch and queue delay for that concurrency, or refuses with what would meet it), then loaded at 32 clients
(the highest level in ``--quick``): its p99 against MS, or its refusal; and once
with an impossible target (0.001 ms), which it must refuse: its exit code and one-line reason.

One JSON object per line ``{"bench": "serve", "model", "arm", "concurrency", "metric", "value", "unit"}``.
Nothing is asserted; times depend on the machine and its load.

    python bench/bench_serve.py [--quick] [--models digits,bert] [--levels 1,8,32,64] [--duration 5]
        [--rounds 3] [--threads 2] [--epochs 3] [--bert-epochs 1] [--target-p99 50] [--no-litserve]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/bench_serve.py` from a checkout without `pip install -e`
    sys.path.insert(0, str(ROOT))

LEVELS = (1, 8, 32, 64)
ROWS = 16
"""Distinct example rows the requests rotate over."""
IMPOSSIBLE_P99_MS = 0.001


def emit(model: str, arm: str, metric: str, value: Any, unit: str, concurrency: Optional[int] = None,
         baseline: Any = None, **extra: Any) -> None:
    line: dict[str, Any] = {"bench": "serve", "model": model, "arm": arm}
    if concurrency is not None:
        line["concurrency"] = concurrency
    line.update({"metric": metric, "value": value, "unit": unit})
    if baseline is not None:
        line["baseline"] = baseline
        line["ratio"] = (value / baseline) if isinstance(value, (int, float)) and baseline else None
    print(json.dumps({**line, **extra}), flush=True)


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


# -- the models ---------------------------------------------------------------------------------------


def export_digits(workdir: Path, epochs: int) -> Path:
    import torch

    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source
    from deepdive.examples import digits_cnn

    started = time.perf_counter()
    model_path = workdir / "digits_cnn.pt"
    torch.save(digits_cnn.train(epochs=epochs, seed=0), model_path)
    emit("digits_cnn", "-", "train_seconds", round(time.perf_counter() - started, 3), "s", epochs=epochs)
    folder = workdir / "digits_export"
    export(load_source(str(ROOT / "server" / "examples" / "digits_cnn.py"), str(model_path)), folder, forms=("eager",))
    return folder


def export_bert(workdir: Path, epochs: int) -> Optional[Path]:
    import torch

    from deepdive.deploy.export import export
    from deepdive.deploy.source import load_source
    from deepdive.examples import polarity, polarity_bert

    reason = polarity.missing_data(polarity.default_data_dir())
    if reason:
        emit("polarity_bert", "-", "skipped", reason, "text")
        return None
    started = time.perf_counter()
    shape = polarity_bert.BERT_MINI
    model = (polarity_bert.train(epochs, seed=0, **shape) if epochs > 0
             else polarity_bert.build_model(**shape).eval())
    emit("polarity_bert", "-", "train_seconds", round(time.perf_counter() - started, 3), "s", epochs=epochs,
         params=sum(p.numel() for p in model.parameters()), **shape)
    model_path = workdir / "polarity_bert.pt"
    torch.save(model, model_path)
    folder = workdir / "bert_export"
    export(load_source(str(ROOT / "server" / "examples" / "polarity_bert.py"), str(model_path)), folder,
           forms=("eager",))
    return folder


def request_bodies(folder: Path) -> tuple[str, list[bytes], list[list[Any]]]:
    """The model's name, ROWS one-row OIP JSON bodies, and the eager model's outputs for each (flat lists)."""
    import numpy as np
    import torch

    from deepdive.deploy.manifest import read

    manifest = read(folder)
    examples = manifest.example_rows(folder)
    model = torch.load(manifest.form_path(folder, "eager"), map_location="cpu", weights_only=False).eval()
    bodies, expected = [], []
    for row in range(ROWS):
        arrays = [examples[t.name][row:row + 1] for t in manifest.inputs]
        body = {"inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(a.shape), "data": a.ravel().tolist()}
                           for t, a in zip(manifest.inputs, arrays)]}
        bodies.append(json.dumps(body).encode())
        with torch.inference_mode():
            out = model(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        expected.append([o.numpy().ravel().tolist() for o in outs])
    return manifest.name, bodies, expected


# -- the servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One arm's server process: started, ready, its URL; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, arm: str, cmd: list[str], threads: int, log: Path, port: Optional[int] = None):
        self.arm, self.cmd, self.log_path = arm, cmd, log
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=ROOT,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.url = f"http://127.0.0.1:{port}" if port else None
        self._seen = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            found = re.search(r"serving \S+ .* at (http://[^/\s]+)", line)
            if found and self.url is None:
                self.url = found.group(1)
            if found:
                self._seen.set()

    def wait_ready(self, ready_path: str, timeout_s: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.arm} exited with {self.proc.returncode}: {self.last_error()}")
            if self.url:
                try:
                    if httpx.get(self.url + ready_path, timeout=2.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.arm} was not ready in {timeout_s:.0f} s: {self.last_error()}")

    def last_error(self) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return text[-1] if text else "(no output)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(15)
        self.log.close()


def ours(folder: Path, arm: str, args: argparse.Namespace, workdir: Path, *extra: str) -> Server:
    """Our server; ``extra`` are its batching flags (``--target-p99`` alone lets it choose the batch and delay)."""
    cmd = [sys.executable, "-m", "deepdive", "deploy", "serve", str(folder), "--port", "0",
           "--threads-per-instance", str(args.threads), "--max-queue", str(max(256, 2 * max(args.levels))), *extra]
    return Server(arm, cmd, args.threads, workdir / f"{folder.name}-{arm}.log")


def litserve_fast_queue() -> bool:
    return importlib.util.find_spec("zmq") is not None


def litserve_server(folder: Path, args: argparse.Namespace, workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--litserve-worker", str(folder), "--port", str(port),
           "--max-batch", str(args.max_batch), "--batch-timeout", str(args.delay_us / 1e6), "--threads", str(args.threads)]
    if litserve_fast_queue():
        cmd.append("--fast-queue")
    return Server("litserve", cmd, args.threads, workdir / f"{folder.name}-litserve.log", port=port)


def litserve_worker(folder: str, port: int, max_batch: int, batch_timeout: float, threads: int, fast_queue: bool) -> int:
    """LitServe serving the eager model of ``folder`` with its batching, answering the same OIP JSON body.

    ``fast_queue``: LitServe's ZeroMQ transport between its API server and its inference worker instead of its
    default multiprocessing queues (on when pyzmq is installed: LitServe's faster option)."""
    import litserve as ls

    from deepdive.deploy.manifest import read

    manifest = read(folder)

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # LitServe's spawned worker imports it by this name
    from litserve_api import OIPJsonAPI

    api = OIPJsonAPI(folder, threads, max_batch_size=max_batch, batch_timeout=batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=30, fast_queue=fast_queue)
    print(f"serving {manifest.name} (litserve) at http://127.0.0.1:{port}/predict", flush=True)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, generate_client_file=False, log_level="warning")
    return 0


# -- the load ------------------------------------------------------------------------------------------


async def closed_loop(url: str, bodies: list[bytes], clients: int, duration_s: float, warmup_s: float,
                      honour_retry_after: bool = False) -> dict[str, Any]:
    """``clients`` clients, each sending its next request when its answer arrives; figures after the warm-up.
    ``honour_retry_after``: a client answered 503 waits the ``Retry-After`` seconds before its next request
    (as a well-behaved client of a server with admission control does), instead of sending at once.

    The clients are aiohttp's (its HTTP parser is compiled): on 2 cores the load generator shares the CPU with
    the server, and httpx's pure-Python client spent a whole core at 32 clients and set the pace itself."""
    import aiohttp

    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30.0)) as client:
        begin = time.perf_counter()
        measure_from = begin + warmup_s
        stop_at = measure_from + duration_s

        async def one(index: int) -> None:
            i = index
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                wait_s = 0.0
                try:
                    async with client.post(url, data=bodies[i % len(bodies)], headers=headers) as response:
                        await response.read()
                        outcome = "ok" if response.status == 200 else str(response.status)
                        if honour_retry_after and response.status == 503:
                            wait_s = min(5.0, float(response.headers.get("Retry-After", "1")))
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    outcome = type(exc).__name__
                i += clients
                if sent >= measure_from:
                    if outcome == "ok":
                        latencies.append(time.perf_counter() - sent)
                    else:
                        errors[outcome] = errors.get(outcome, 0) + 1
                if wait_s:
                    await asyncio.sleep(min(wait_s, max(0.0, stop_at - time.perf_counter())))

        cpu0 = time.process_time()
        await asyncio.gather(*(one(i) for i in range(clients)))
        ended = time.perf_counter()
        cpu = time.process_time() - cpu0
    span = max(1e-9, ended - measure_from)
    return {"latencies": latencies, "errors": errors, "seconds": span, "client_cpu": cpu / max(1e-9, ended - begin)}


def batch_counts(url: str) -> Optional[tuple[float, float]]:
    """(rows, batches) so far from our server's Prometheus /metrics (None for LitServe)."""
    import httpx

    try:
        text = httpx.get(url + "/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return None
    total = re.search(r"^deepdive_serve_batch_size_sum\{[^}]*\} (\S+)", text, re.M)
    count = re.search(r"^deepdive_serve_batch_size_count\{[^}]*\} (\S+)", text, re.M)
    return (float(total.group(1)), float(count.group(1))) if total and count else None


def check_answer(server: Server, path: str, body: bytes, expected: list[list[float]]) -> float:
    """The largest absolute difference between the arm's answer to ``body`` and the eager model's."""
    import httpx

    response = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"}, timeout=30)
    response.raise_for_status()
    outputs = response.json()["outputs"]
    return max(max(abs(a - b) for a, b in zip(out["data"], want)) for out, want in zip(outputs, expected))


def measure_model(folder: Path, args: argparse.Namespace, workdir: Path) -> None:
    import httpx

    name, bodies, expected = request_bodies(folder)
    task = folder.name.removesuffix("_export")
    task = {"digits": "digits_cnn", "bert": "polarity_bert"}.get(task, task)
    servers: dict[str, Server] = {}
    paths: dict[str, tuple[str, str]] = {}  # arm -> (infer path, ready path)
    oip = (f"/v2/models/{name}/infer", "/v2/health/ready")
    batch = ["--max-batch", str(args.max_batch)]
    servers["batching_on"] = ours(folder, "batching_on", args, workdir, *batch, "--max-queue-delay-us", str(args.delay_us))
    servers["batching_off"] = ours(folder, "batching_off", args, workdir, *batch, "--no-batching")
    paths["batching_on"] = paths["batching_off"] = oip
    litserve_reason = None if args.litserve else "--no-litserve"
    if litserve_reason is None and importlib.util.find_spec("litserve") is None:
        litserve_reason = "litserve is not installed (pip install -e '.[bench-serve]')"
    if litserve_reason is None:
        servers["litserve"] = litserve_server(folder, args, workdir)
        paths["litserve"] = ("/predict", "/health")
    else:
        emit(task, "litserve", "skipped", litserve_reason, "text")
    configs = {"batching_on": {"max_batch": args.max_batch, "max_queue_delay_us": args.delay_us},
               "batching_off": {"batching": False},
               "litserve": {"max_batch_size": args.max_batch, "batch_timeout_s": args.delay_us / 1e6,
                            "fast_queue": litserve_fast_queue(), "workers_per_device": 1, "api_servers": 1}}
    try:
        for arm, server in list(servers.items()):
            emit(task, arm, "config", {**configs[arm], "threads": args.threads, "body": "OIP JSON, 1 row"}, "json")
            try:
                server.wait_ready(paths[arm][1])
                emit(task, arm, "max_abs_diff_vs_eager", check_answer(server, paths[arm][0], bodies[0], expected[0]), "abs")
            except (RuntimeError, OSError, ValueError, KeyError, httpx.HTTPError) as exc:
                emit(task, arm, "skipped", f"{type(exc).__name__}: {exc}"[:300], "text")
                server.stop()
                del servers[arm]
        arms = list(servers)
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for level in args.levels:
            gathered: dict[str, dict[str, Any]] = {arm: {"latencies": [], "errors": {}, "seconds": 0.0, "cpu": [],
                                                         "rows": 0.0, "batches": 0.0} for arm in arms}
            for round_index in range(args.rounds):
                for arm in (arms if round_index % 2 == 0 else list(reversed(arms))):
                    server = servers[arm]
                    before = batch_counts(server.url) if arm != "litserve" else None
                    got = asyncio.run(closed_loop(server.url + paths[arm][0], bodies, level, args.duration, args.warmup))
                    after = batch_counts(server.url) if arm != "litserve" else None
                    into = gathered[arm]
                    into["latencies"] += got["latencies"]
                    into["seconds"] += got["seconds"]
                    into["cpu"].append(got["client_cpu"])
                    for key, count in got["errors"].items():
                        into["errors"][key] = into["errors"].get(key, 0) + count
                    if before and after:  # includes the warm-up's batches: the mix of sizes is the same
                        into["rows"] += after[0] - before[0]
                        into["batches"] += after[1] - before[1]
            for arm, into in gathered.items():
                lat = into["latencies"]
                figures = {"throughput": len(lat) / into["seconds"] if into["seconds"] else 0.0,
                           "p50_ms": 1000 * quantile(lat, 0.5) if lat else None,
                           "p99_ms": 1000 * quantile(lat, 0.99) if lat else None}
                results[(arm, level)] = figures
                emit(task, arm, "throughput", round(figures["throughput"], 2), "req/s", level, requests=len(lat))
                for metric in ("p50_ms", "p99_ms"):
                    emit(task, arm, metric.removesuffix("_ms"), figures[metric] and round(figures[metric], 3), "ms", level)
                emit(task, arm, "errors", sum(into["errors"].values()), "requests", level, by_status=into["errors"])
                emit(task, arm, "client_cpu", round(100 * max(into["cpu"]), 1), "%", level)
                if into["batches"]:
                    emit(task, arm, "mean_batch", round(into["rows"] / into["batches"], 3), "rows", level)
            for arm, against in (("batching_on", "batching_off"), ("batching_on", "litserve")):
                if (arm, level) not in results or (against, level) not in results:
                    continue
                mine, theirs = results[(arm, level)], results[(against, level)]
                for metric, unit in (("throughput", "req/s"), ("p50_ms", "ms"), ("p99_ms", "ms")):
                    if mine[metric] is not None and theirs[metric] is not None:
                        emit(task, arm, metric.removesuffix("_ms"), round(mine[metric], 3), unit, level,
                             baseline=round(theirs[metric], 3), against=against)
        goals(task, results)
    finally:
        for server in servers.values():
            server.stop()
    if args.target_p99 is not None:
        target_check(folder, bodies, task, args, workdir)


def goals(task: str, results: dict[tuple[str, int], dict[str, Any]]) -> None:
    level = 32 if any(key[1] == 32 for key in results) else max((key[1] for key in results), default=None)
    if level is None:
        return
    on, off, lit = (results.get((arm, level)) for arm in ("batching_on", "batching_off", "litserve"))
    if on and off and on["p99_ms"] is not None and off["p99_ms"] is not None and off["throughput"]:
        ratio = on["throughput"] / off["throughput"]
        emit(task, "batching_on", "goal_batching_3x_p99_no_worse", ratio >= 3 and on["p99_ms"] <= off["p99_ms"], "bool",
             level, throughput_ratio=round(ratio, 3), p99_ms=round(on["p99_ms"], 3), p99_off_ms=round(off["p99_ms"], 3))
    if on and lit and on["p99_ms"] is not None and lit["p99_ms"] is not None:
        emit(task, "batching_on", "goal_beats_litserve", on["throughput"] > lit["throughput"] and on["p99_ms"] < lit["p99_ms"],
             "bool", level, throughput=round(on["throughput"], 2), litserve_throughput=round(lit["throughput"], 2),
             p99_ms=round(on["p99_ms"], 3), litserve_p99_ms=round(lit["p99_ms"], 3))


def target_check(folder: Path, bodies: list[bytes], task: str, args: argparse.Namespace, workdir: Path) -> None:
    """Ours with ``--target-p99``: the p99 it gives under load; and an impossible target, which it must refuse."""
    level = 32 if 32 in args.levels else max(args.levels)
    name = json.loads((folder / "deploy.json").read_text())["name"]
    server = ours(folder, "target_p99", args, workdir, "--target-p99", str(args.target_p99), "--clients", str(level))
    try:
        server.wait_ready("/v2/health/ready")
        chosen = next((line for line in server.lines if line.startswith("--target-p99")), "")
        got = asyncio.run(closed_loop(server.url + f"/v2/models/{name}/infer", bodies, level,
                                      args.duration * args.rounds, args.warmup))
        p99 = 1000 * quantile(got["latencies"], 0.99) if got["latencies"] else None
        emit(task, "target_p99", "p99", p99 and round(p99, 3), "ms", level, target_ms=args.target_p99,
             met=p99 is not None and p99 <= args.target_p99, predicted_ms=_predicted(chosen), chosen=chosen,
             throughput=round(len(got["latencies"]) / got["seconds"], 2), errors=sum(got["errors"].values()))
    except RuntimeError as exc:  # it refused the target on this machine (exit 2, one line), or never came up
        refused_with = str(exc)
        emit(task, "target_p99", "refused" if server.proc.returncode == 2 else "skipped", refused_with[:600], "text",
             target_ms=args.target_p99)
        admission = re.search(r"--max-batch (\d+) --max-queue (\d+)", refused_with)
        if server.proc.returncode == 2 and admission:
            admission_check(folder, name, bodies, task, level, admission.groups(), args, workdir)
    finally:
        server.stop()
    refused = ours(folder, "target_impossible", args, workdir, "--target-p99", str(IMPOSSIBLE_P99_MS))
    try:
        code = refused.proc.wait(180)
    except subprocess.TimeoutExpired:
        code = None
    reason = refused.last_error() if code else ""
    refused.stop()
    emit(task, "target_p99", "refuses_impossible", code not in (0, None), "bool", target_ms=IMPOSSIBLE_P99_MS,
         exit_code=code, reason=reason[:300])


def _predicted(chosen: str) -> Optional[float]:
    """The p99 the server's ``--target-p99`` line predicted (its model: batch runs and its own work per request)."""
    found = re.search(r"predicted p99 ([\d.]+) ms", chosen)
    return float(found.group(1)) if found else None


def admission_check(folder: Path, name: str, bodies: list[bytes], task: str, level: int, admission: tuple[str, str],
                    args: argparse.Namespace, workdir: Path) -> None:
    """The admission a refused ``--target-p99`` suggested (``--max-batch B --max-queue Q``), served under the
    same load: the p99 of the requests it serves, and the share it turns away with 503 (the clients honour
    ``Retry-After``, as clients of a server with admission control should)."""
    batch, queue = admission
    server = ours(folder, "target_admission", args, workdir, "--target-p99", str(args.target_p99), "--clients",
                  str(level), "--max-batch", batch, "--max-queue", queue)
    try:
        server.wait_ready("/v2/health/ready")
        chosen = next((line for line in server.lines if line.startswith("--target-p99")), "")
        got = asyncio.run(closed_loop(server.url + f"/v2/models/{name}/infer", bodies, level,
                                      args.duration * args.rounds, args.warmup, honour_retry_after=True))
        served = len(got["latencies"])
        turned_away = got["errors"].get("503", 0)
        p99 = 1000 * quantile(got["latencies"], 0.99) if got["latencies"] else None
        emit(task, "target_admission", "served_p99", p99 and round(p99, 3), "ms", level, target_ms=args.target_p99,
             met=p99 is not None and p99 <= args.target_p99, predicted_ms=_predicted(chosen), max_batch=int(batch),
             max_queue=int(queue),
             chosen=chosen, throughput=round(served / got["seconds"], 2),
             turned_away_share=round(turned_away / max(1, served + turned_away), 4), errors=got["errors"])
    except RuntimeError as exc:
        emit(task, "target_admission", "refused" if server.proc.returncode == 2 else "skipped", str(exc)[:600],
             "text", target_ms=args.target_p99, max_batch=int(batch), max_queue=int(queue))
    finally:
        server.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: digits only, 1 epoch, levels 1 and 8, 0.5 s per arm, 1 round, --target-p99 1000")
    parser.add_argument("--models", default="digits,bert", help="digits, bert or both (default digits,bert)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="client counts (default 1,8,32,64)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per arm per level per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring, each time")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per level")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each server")
    parser.add_argument("--max-batch", type=int, default=32, help="max batch size of both batching arms")
    parser.add_argument("--delay-us", type=int, default=2000, help="max queue delay of both batching arms (µs)")
    parser.add_argument("--epochs", type=int, default=3, help="digits CNN training epochs")
    parser.add_argument("--bert-epochs", type=int, default=1, help="BERT-mini training epochs (0: initial weights)")
    parser.add_argument("--target-p99", type=float, default=None,
                        help="the --target-p99 check's target, ms (default 50; 1000 with --quick; 0: skip the check)")
    parser.add_argument("--no-litserve", dest="litserve", action="store_false", help="skip the LitServe arm")
    parser.add_argument("--litserve-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch-timeout", type=float, default=0.002, help=argparse.SUPPRESS)
    parser.add_argument("--fast-queue", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.litserve_worker:
        return litserve_worker(args.litserve_worker, args.port, args.max_batch, args.batch_timeout, args.threads,
                               args.fast_queue)
    if args.quick:
        args.models, args.levels, args.duration, args.warmup, args.rounds, args.epochs = "digits", "1,8", 0.5, 0.2, 1, 1
    if args.target_p99 is None:
        args.target_p99 = 1000.0 if args.quick else 50.0
    try:
        args.levels = sorted({int(x) for x in args.levels.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--levels {args.levels!r}: a list of client counts, e.g. 1,8,32,64")
    models = {m.strip() for m in args.models.split(",") if m.strip()}
    if not args.levels or min(args.levels) < 1 or not models <= {"digits", "bert"} or args.rounds < 1:
        parser.error("--levels are counts >= 1, --models is digits and/or bert, --rounds >= 1")
    if args.target_p99 <= 0:
        args.target_p99 = None
    import torch

    torch.set_num_threads(1)  # this process only trains briefly and sends requests
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        workdir = Path(tmp)
        folders = []
        if "digits" in models:
            folders.append(export_digits(workdir, args.epochs))
        if "bert" in models:
            folder = export_bert(workdir, args.bert_epochs)
            if folder is not None:
                folders.append(folder)
        for folder in folders:
            measure_model(folder, args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
