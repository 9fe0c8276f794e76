"""`deepdive deploy serve FOLDER`: an exported model served over the Open Inference Protocol v2 with dynamic batching.

Opens ``--instances`` runners of the form (the manifest's choice from ``deploy bench``, else eager),
warms them on the example rows, optionally picks the batcher's settings for ``--target-p99``
(:mod:`deepdive.deploy.target`), prints the URL and the settings and serves with uvicorn until Ctrl-C
or SIGTERM (in-flight requests and queued batches finish first).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, Optional

TOKEN_ENV = "DEEPDIVE_DEPLOY_TOKEN"
DEFAULT_MAX_BATCH = 32
DEFAULT_DELAY_US = 2000


def add_parser(actions: Any) -> None:
    """Register ``serve`` on the ``deploy`` action subparsers."""
    p = actions.add_parser("serve", help="serve an exported model over HTTP (Open Inference Protocol v2) with dynamic batching",
                           description="Serve the model exported in FOLDER (deploy.json) with uvicorn: health, metadata "
                                       "and infer on the Open Inference Protocol v2 REST (tritonclient, KServe clients), "
                                       "Prometheus /metrics, requests joined into batches Triton's way. Binds 127.0.0.1 "
                                       f"unless --host says otherwise. With --token (or ${TOKEN_ENV}) every request but the "
                                       "two health probes needs `Authorization: Bearer TOKEN`.")
    p.add_argument("folder", help="the export folder (deepdive deploy export ... --out FOLDER)")
    p.add_argument("--form", default=None, help="the form to run: eager, compiled, torchscript, pt2, onnx, int8 (default: "
                                                "the one deploy bench chose, else eager)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: a free one; default 8000)")
    p.add_argument("--instances", type=int, default=1, help="model instances, each its own thread and runner (default 1)")
    p.add_argument("--threads-per-instance", type=int, default=None, metavar="T",
                   help="compute threads per instance (default: deploy bench's choice, else 1)")
    p.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help=f"most rows per batch, and per request (default {DEFAULT_MAX_BATCH})")
    p.add_argument("--preferred", default=None, metavar="8,16,32", help="preferred batch sizes, sent as soon as formed")
    p.add_argument("--max-queue-delay-us", type=int, default=None, metavar="US",
                   help=f"longest wait for a batch to fill, from the oldest request's arrival (default {DEFAULT_DELAY_US})")
    p.add_argument("--timeout-ms", type=float, default=1000.0,
                   help="a request still queued this long fails (504) and never runs (default 1000)")
    p.add_argument("--max-queue", type=int, default=256, help="most requests waiting; more get 503 with Retry-After (default 256)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body in MiB; larger get 413 (default 64)")
    p.add_argument("--token", default=None, help=f"require `Authorization: Bearer TOKEN` (default: ${TOKEN_ENV} if set; prefer the "
                                                 "variable: a command line is visible to other users in ps)")
    p.add_argument("--no-batching", action="store_true", help="run every request alone (no joining, no delay)")
    p.add_argument("--target-p99", type=float, default=None, metavar="MS",
                   help="choose --max-batch and --max-queue-delay-us so the predicted p99 latency fits MS (measured at "
                        "startup); settings given explicitly are checked against it and refused if they break it")
    p.add_argument("--clients", type=int, default=None, metavar="N",
                   help="with --target-p99: the concurrent requests to plan for (closed-loop clients or requests in "
                        "flight); the prediction then counts the batches queued ahead at that load (without it, it "
                        "assumes the load stays within what the instances serve)")


def _preferred(text: Optional[str]) -> tuple[int, ...]:
    from deepdive.deploy.errors import DeployError

    if not text:
        return ()
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise DeployError(f"--preferred {text!r} is not a list of batch sizes: write e.g. --preferred 8,16,32") from None
    if not sizes or min(sizes) < 1:
        raise DeployError(f"--preferred {text!r}: batch sizes are whole numbers of at least 1, e.g. 8,16,32")
    return sizes


def _check(args: argparse.Namespace) -> None:
    from deepdive.deploy.errors import DeployError

    for flag, value, low in (("--instances", args.instances, 1), ("--threads-per-instance", args.threads_per_instance, 1),
                             ("--max-batch", args.max_batch, 1), ("--max-queue-delay-us", args.max_queue_delay_us, 0),
                             ("--max-queue", args.max_queue, 1), ("--port", args.port, 0), ("--clients", args.clients, 1)):
        if value is not None and value < low:
            raise DeployError(f"{flag} {value} must be at least {low}")
    if not 0 <= args.port <= 65535:
        raise DeployError(f"--port {args.port} is not a TCP port (0-65535)")
    if args.timeout_ms <= 0 or args.max_body_mb <= 0:
        raise DeployError("--timeout-ms and --max-body-mb must be more than 0")
    if args.clients is not None and args.target_p99 is None:
        raise DeployError("--clients is the load --target-p99 plans for: give --target-p99 MS too (or drop --clients)")
    if args.target_p99 is not None and args.no_batching:
        raise DeployError("--target-p99 chooses the batching settings: drop --no-batching (or --target-p99)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; exit 2 with one line on bad input (a :class:`DeployError`)."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deepdive.deploy import manifest as manifest_mod
    from deepdive.deploy.app import ServedModel, bind, create_app, request_work, serve
    from deepdive.deploy.batcher import Batcher, BatchConfig, measure
    from deepdive.deploy.errors import DeployError
    from deepdive.deploy.metrics import ServerMetrics
    from deepdive.deploy.choose import open_choice
    from deepdive.deploy.runners import off_main_thread, open_runner
    from deepdive.deploy.target import candidates, choose
    from deepdive.jobs import events
    from deepdive.netutil import is_loopback

    _check(args)
    preferred = _preferred(args.preferred)
    folder = Path(args.folder)
    manifest = manifest_mod.read(folder)
    choice = manifest.choice or {}
    form = args.form or choice.get("form") or "eager"
    threads = args.threads_per_instance or (choice.get("threads") if choice.get("form") == form else None) or 1
    token = args.token or os.environ.get(TOKEN_ENV) or None
    console = Console(stderr=True, highlight=False)
    if not is_loopback(args.host):
        console.print(f"warning: listening on {args.host}: anyone who can reach this machine on port {args.port} can "
                      "send requests" + ("" if token else "; start it with --token to require one"), markup=False)
    sock = bind(args.host, args.port)  # before loading the model: a taken port fails at once
    try:
        examples_by_name = manifest.example_rows(folder)
        examples = [examples_by_name[t.name] for t in manifest.inputs]
    except (DeployError, KeyError):
        examples = None
        if args.target_p99 is not None:
            sock.close()
            raise DeployError(f"{folder} has no example inputs to measure for --target-p99: export the model again")
    import numpy as np
    import torch

    torch.set_num_threads(threads)  # torch's intra-op pool is per process: each instance's ops use T threads
    progress = Progress(TextColumn("[bold]serve"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    steps = args.instances + (1 if args.target_p99 is not None else 0)
    task = progress.add_task("opening", total=steps)

    def step(done: float, text: str) -> None:
        progress.update(task, completed=done, description=text)
        events.progress(done / steps, text)

    def prepare() -> tuple[list[Any], Any, dict[int, dict[str, float]], Optional[float]]:
        """Open and warm the instances and measure them for --target-p99 (in a thread of its own, see below)."""
        runners: list[Any] = []
        for index in range(args.instances):
            step(index, f"opening {form} instance {index + 1}/{args.instances}")
            if args.form is None and choice.get("form") == form:
                # deploy bench's choice with its execution provider and precision, not only its form
                runner = open_choice(folder, manifest, threads=threads)
            else:
                runner = open_runner(folder, manifest, form, threads=threads)
            if examples is not None:  # warm up (first-call allocations, compiled graphs) before the first request
                for size in (1, args.max_batch or DEFAULT_MAX_BATCH):
                    runner.run([np.ascontiguousarray(np.resize(a, (size, *a.shape[1:]))) for a in examples])
            runners.append(runner)
        step(args.instances, "instances ready")
        target, times, request_ms = None, {}, None
        if args.target_p99 is not None:
            assert examples is not None
            sizes = candidates(args.max_batch)
            times = measure(runners[0], examples, sizes, repeats=30, budget_s=1.0,
                            progress=lambda f, text: step(args.instances + 0.9 * f, text))
            step(args.instances + 0.9, "measuring the server's own work per request")
            probe = ServedModel(manifest=manifest, form=form, metrics=ServerMetrics(manifest.name),
                                batcher=Batcher(runners[:1], BatchConfig.off(max_batch_size=1), name=manifest.name))
            request_ms = request_work(probe, examples, token=token)
            target = choose(times, args.target_p99, max_batch=args.max_batch, delay_us=args.max_queue_delay_us,
                            clients=args.clients, instances=args.instances, max_queue=args.max_queue,
                            request_ms=request_ms or 0.0)
        return runners, target, times, request_ms

    try:
        with progress:
            # Off the main thread: a torch op run on the main thread leaves its OpenMP thread team alive for the
            # process's life, and the instances' threads then run every op slower (measured on BERT-mini at 2
            # threads: 5.2 instead of 1.9 ms a row, 27 instead of 20 ms a batch of 16; see off_main_thread).
            runners, target, times, request_ms = off_main_thread(prepare)
    except BaseException:
        sock.close()
        raise
    max_batch = target.max_batch_size if target else (args.max_batch or DEFAULT_MAX_BATCH)
    delay = target.max_queue_delay_us if target else (args.max_queue_delay_us if args.max_queue_delay_us is not None
                                                      else DEFAULT_DELAY_US)
    if args.no_batching:
        config = BatchConfig.off(max_batch_size=max_batch, timeout_ms=args.timeout_ms, max_queue=args.max_queue)
    else:
        if target and preferred and max(preferred) > max_batch:
            dropped = [p for p in preferred if p > max_batch]
            preferred = tuple(p for p in preferred if p <= max_batch)
            console.print(f"note: --preferred {','.join(map(str, dropped))} dropped: over the chosen max batch {max_batch}",
                          markup=False)
        config = BatchConfig(max_batch_size=max_batch, preferred_batch_sizes=preferred, max_queue_delay_us=delay,
                             timeout_ms=args.timeout_ms, max_queue=args.max_queue)
    metrics = ServerMetrics(manifest.name)
    batcher = Batcher(runners, config, listener=metrics, name=manifest.name)
    served = ServedModel(manifest=manifest, form=form, batcher=batcher, metrics=metrics, folder=folder.resolve())
    app = create_app(served, token=token, max_body_bytes=int(args.max_body_mb * 2**20))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    if target:
        print(f"--target-p99 {args.target_p99:g} ms: {target.reason}", flush=True)
        print("  measured p99 per batch: " + ", ".join(f"{b}: {1000 * t['p99']:.2f} ms" for b, t in sorted(times.items())),
              flush=True)
        print("  the server's own work per request (HTTP, JSON; its event loop's CPU time, measured here): "
              + (f"{request_ms:.3f} ms" if request_ms is not None else
                 "not measured (no per-thread CPU clock on this platform): left out of the prediction"), flush=True)
    batching = ("off (each request alone)" if not config.batching else
                f"max batch {config.max_batch_size}, queue delay {config.max_queue_delay_us} µs"
                + (f", preferred {','.join(map(str, config.preferred_batch_sizes))}" if config.preferred_batch_sizes else ""))

    def stopped(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Set before the URL is printed (a client may stop the server as soon as it reads it). uvicorn handles
    # SIGTERM (a cancelled job) and Ctrl-C itself, finishes in-flight requests and queued batches, then raises
    # the signal again with the handler set before it: this one, so the last stats and the "stopped" line go
    # out for SIGTERM as they do for Ctrl-C.
    signal.signal(signal.SIGTERM, stopped)
    from deepdive.deploy import reporting

    stop_reporting: Any = lambda: None  # noqa: E731
    try:
        print(f"serving {manifest.name} ({form}, {args.instances} instance{'s' if args.instances > 1 else ''} × "
              f"{threads} thread{'s' if threads > 1 else ''}) at {url}/v2/models/{manifest.name}", flush=True)
        print(f"  batching: {batching}; timeout {config.timeout_ms:g} ms; queue {config.max_queue}; "
              f"body ≤ {args.max_body_mb:g} MiB; token {'required' if token else 'off'}", flush=True)
        print(f"  metrics: {url}/metrics   health: {url}/v2/health/ready   (Ctrl-C stops, finishing in-flight "
              "requests)", flush=True)
        events.data("deploy.serve", url=url, model=manifest.name, form=form, config=config.to_json(),
                    target=None if not target else {"p99_ms": args.target_p99, "predicted_ms": target.predicted_p99_ms,
                                                    "request_ms": request_ms, "reason": target.reason})
        stop_reporting = reporting.start(batcher, manifest, url, form)  # serve.stats for the dashboard (with a hub)
        serve(app, sock)
    except KeyboardInterrupt:
        pass
    finally:
        stop_reporting()
        sock.close()
    print("stopped (in-flight requests finished)", file=sys.stderr, flush=True)
    return 0
