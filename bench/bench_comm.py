"""Communication benchmark: bytes and time per step of DDP gradient compression at 2 processes.

Prints one JSON line per measurement, ``{"bench": "comm", "metric": ..., "value": ..., "unit": ...}``
(plus ``baseline`` and ``ratio`` where a figure is compared with plain allreduce in the same run).

1. Loopback (``torchrun --standalone --nproc_per_node=2``, gloo): none, fp16 and PowerSGD r=1, 2, 4
   on an MLP, switched with ``GradCompression.set_mode`` inside one run (same processes, same
   model): bytes sent per step, time in collectives, exposed communication, step time.
2. Bandwidth-limited: two network namespaces joined by a veth pair, each end shaped to 1 Gbit/s
   with ``tc qdisc add dev X root tbf rate 1gbit burst 32kbit latency 50ms``, addresses
   192.0.2.1 and 192.0.2.2 (a documentation range); one gloo process per namespace
   (``torchrun --nnodes=2 --node_rank=i --master_addr 192.0.2.1``), traffic only between those two
   addresses. Compares communication time per step for none and PowerSGD (r=2), and the scaling
   efficiency: the step time of the bare model on one process (measured in the same processes
   before DDP is set up) over the DDP step time. The namespaces are always removed (also on Ctrl-C
   or SIGTERM); where they cannot be made, a ``skipped`` line says why.

Usage: python bench/bench_comm.py [--steps 10] [--no-netns]. Benchmarks never assert times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()


def emit(metric: str, value: Any, unit: str, **extra: Any) -> None:
    line = {"bench": "comm", "metric": metric, "value": round(value, 4) if isinstance(value, float) else value,
            "unit": unit}
    line.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()})
    print(json.dumps(line), flush=True)


# --------------------------------------------------------------------------------------------
# The worker (runs under torchrun)
# --------------------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from deepdive.engine.compression import GradCompression
    from deepdive.engine.topology import describe_topology

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    w = args.width
    model = torch.nn.Sequential(
        torch.nn.Linear(w, 2 * w), torch.nn.ReLU(), torch.nn.Linear(2 * w, 2 * w), torch.nn.ReLU(),
        torch.nn.Linear(2 * w, w),
    )
    gen = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(args.batch, w, generator=gen)
    y = torch.randn(args.batch, w, generator=gen)

    # One process, no communication: the reference for the scaling efficiency. Every rank measures
    # at the same time, so both share the machine as they do under DDP.
    bare_opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    dist.barrier()
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        bare_opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        bare_opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    bare_step = sum(times) / len(times)

    ddp = torch.nn.parallel.DistributedDataParallel(model)
    comp = GradCompression("none", warmup_steps=2)
    comp.register(ddp)
    opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
    phases = {}
    for phase in args.phases.split(","):
        mode, _, r = phase.partition(":")
        comp.set_mode(mode, **({"rank": int(r)} if r else {}))
        dist.barrier()
        rows = []
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(ddp(x), y)
            comp.stats.begin_step()
            loss.backward()
            figures = comp.stats.end_step()
            opt.step()
            figures["step_time_s"] = time.perf_counter() - t0
            if i >= args.warmup:
                rows.append(figures)
        if any(row["comm_warmup"] for row in rows):
            raise RuntimeError(f"{phase}: PowerSGD still warming up in measured steps; raise --warmup")
        keys = ("comm_bytes_uncompressed", "comm_bytes_sent", "comm_time_s", "comm_exposed_s", "step_time_s")
        mine = {k: sum(row[k] for row in rows) / len(rows) for k in keys}
        everyone: list = [None] * world
        dist.all_gather_object(everyone, mine)
        phases[phase] = {k: sum(e[k] for e in everyone) / world for k in keys}
    bare_all: list = [None] * world
    dist.all_gather_object(bare_all, bare_step)
    if rank == 0:
        print(json.dumps({"result": {
            "phases": phases, "bare_step_s": sum(bare_all) / world, "world_size": world,
            "params": sum(p.numel() for p in model.parameters()), "topology": describe_topology()["summary"],
        }}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def worker_args(args: argparse.Namespace, phases: str) -> list[str]:
    return [str(HERE), "--worker", "--phases", phases, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--width", str(args.width), "--batch", str(args.batch)]


def parse_result(stdout: str) -> Optional[dict]:
    for line in stdout.splitlines():
        if line.startswith('{"result":'):
            return json.loads(line)["result"]
    return None


def run_group(cmds: list[list[str]], envs: list[dict], timeout: float) -> list[subprocess.CompletedProcess]:
    """Starts the commands together (each in its own session) and waits; kills them on timeout."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=ROOT, start_new_session=True) for cmd, env in zip(cmds, envs)]
    deadline = time.monotonic() + timeout
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        # torchrun stops its workers on SIGTERM (they run in sessions of their own); SIGKILL after 15 s.
        alive = [proc for proc in procs if proc.poll() is None]
        for proc in alive:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in alive:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return done


def loopback(args: argparse.Namespace) -> None:
    phases = "none,fp16,powersgd:1,powersgd:2,powersgd:4"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *worker_args(args, phases)]
    try:
        (proc,) = run_group([cmd], [env], timeout=300)
    except subprocess.TimeoutExpired:
        emit("skipped", None, "", reason="loopback run took over 300 s; killed")
        return
    result = parse_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        emit("skipped", None, "", reason=f"loopback run failed (exit {proc.returncode}): "
             f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        return
    base = result["phases"]["none"]
    common = {"processes": 2, "link": "loopback", "params": result["params"]}
    emit("bytes_per_step_uncompressed", base["comm_bytes_uncompressed"], "B", **common)
    for phase, fig in result["phases"].items():
        name = phase.replace(":", "_r")
        extra = {} if phase == "none" else {"baseline": base["comm_bytes_sent"],
                                            "ratio": base["comm_bytes_sent"] / fig["comm_bytes_sent"]}
        emit(f"bytes_per_step_{name}", fig["comm_bytes_sent"], "B", **common, **extra)
        extra = {} if phase == "none" else {"baseline": base["comm_time_s"] * 1e3,
                                            "ratio": fig["comm_time_s"] / base["comm_time_s"]}
        emit(f"comm_time_per_step_{name}", fig["comm_time_s"] * 1e3, "ms", **common, **extra)
        emit(f"comm_exposed_per_step_{name}", fig["comm_exposed_s"] * 1e3, "ms", **common)
        extra = {} if phase == "none" else {"baseline": base["step_time_s"] * 1e3,
                                            "ratio": fig["step_time_s"] / base["step_time_s"]}
        emit(f"step_time_{name}", fig["step_time_s"] * 1e3, "ms", **common, **extra)
    emit("bare_step_time_1_process", result["bare_step_s"] * 1e3, "ms", **common)


# --------------------------------------------------------------------------------------------
# Two namespaces, a 1 Gbit/s veth pair
# --------------------------------------------------------------------------------------------


class Namespaces:
    """Two network namespaces joined by a shaped veth pair; removed by :meth:`remove`."""

    ADDRS = ("192.0.2.1", "192.0.2.2")

    def __init__(self) -> None:
        tag = f"ddc{os.getpid()}"
        self.ns = (f"{tag}a", f"{tag}b")
        self.dev = (f"{tag}a", f"{tag}b")  # one device per namespace; names within 15 characters
        self.made: list[str] = []

    def _ip(self, *argv: str) -> None:
        proc = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise OSError(f"`ip {' '.join(argv)}` failed: {proc.stderr.strip() or proc.returncode}")

    def create(self) -> None:
        for ns in self.ns:
            self._ip("netns", "add", ns)
            self.made.append(ns)
        self._ip("link", "add", self.dev[0], "netns", self.ns[0], "type", "veth", "peer", "name", self.dev[1],
                 "netns", self.ns[1])
        for ns, dev, addr in zip(self.ns, self.dev, self.ADDRS):
            self._ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "link", "set", dev, "up")
            proc = subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", "1gbit",
                                   "burst", "32kbit", "latency", "50ms"], capture_output=True, text=True, timeout=30)
            if proc.returncode != 0:
                raise OSError(f"tc tbf on {dev} failed: {proc.stderr.strip()}")

    def remove(self) -> None:
        # Deleting a namespace deletes the veth end inside it, and with it the pair.
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()


def remove_stale_namespaces() -> None:
    """Namespaces an earlier run of this benchmark left behind (its process is gone, e.g. SIGKILL)."""
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("ddc") and name[3:-1].isdigit() and name[-1] in "ab":
            pid = int(name[3:-1])
            if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def why_no_namespaces() -> Optional[str]:
    if sys.platform != "linux":
        return f"network namespaces need Linux (this is {sys.platform})"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (install iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root (run as root, or in a container with CAP_NET_ADMIN)"
    return None


def bandwidth_limited(args: argparse.Namespace) -> None:
    reason = why_no_namespaces()
    if reason:
        emit("skipped", None, "", run="netns_1gbit", reason=reason)
        return
    remove_stale_namespaces()
    spaces = Namespaces()
    try:
        try:
            spaces.create()
        except (OSError, subprocess.TimeoutExpired) as exc:
            emit("skipped", None, "", run="netns_1gbit", reason=f"cannot make the namespaces: {exc}")
            return
        phases = "none,powersgd:2"
        cmds, envs = [], []
        for node, (ns, dev) in enumerate(zip(spaces.ns, spaces.dev)):
            cmds.append(["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run",
                         "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1",
                         f"--master_addr={Namespaces.ADDRS[0]}", "--master_port=29500",
                         *worker_args(args, phases)])
            envs.append(dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=dev))
        try:
            procs = run_group(cmds, envs, timeout=300)
        except subprocess.TimeoutExpired:
            emit("skipped", None, "", run="netns_1gbit", reason="the namespace run took over 300 s; killed")
            return
        result = parse_result(procs[0].stdout)
        if any(p.returncode for p in procs) or result is None:
            tail = next((p.stderr.strip().splitlines()[-1] for p in procs if p.returncode and p.stderr.strip()),
                        "no output")
            emit("skipped", None, "", run="netns_1gbit",
                 reason=f"namespace run failed (exit {[p.returncode for p in procs]}): {tail}")
            return
    finally:
        spaces.remove()

    common = {"processes": 2, "link": "veth 1gbit tbf, 2 namespaces", "params": result["params"]}
    none, psgd = result["phases"]["none"], result["phases"]["powersgd:2"]
    bare = result["bare_step_s"]
    emit("netns_allreduce_throughput_none", none["comm_bytes_uncompressed"] / none["comm_time_s"] / 1e6, "MB/s",
         **common)
    emit("netns_bytes_per_step_none", none["comm_bytes_sent"], "B", **common)
    emit("netns_bytes_per_step_powersgd_r2", psgd["comm_bytes_sent"], "B", **common,
         baseline=none["comm_bytes_sent"], ratio=none["comm_bytes_sent"] / psgd["comm_bytes_sent"])
    emit("netns_comm_time_per_step_none", none["comm_time_s"] * 1e3, "ms", **common)
    emit("netns_comm_time_per_step_powersgd_r2", psgd["comm_time_s"] * 1e3, "ms", **common,
         baseline=none["comm_time_s"] * 1e3, ratio=psgd["comm_time_s"] / none["comm_time_s"])
    emit("netns_comm_time_reduction_powersgd_r2", (1 - psgd["comm_time_s"] / none["comm_time_s"]) * 100, "%",
         **common)
    emit("netns_step_time_none", none["step_time_s"] * 1e3, "ms", **common)
    emit("netns_step_time_powersgd_r2", psgd["step_time_s"] * 1e3, "ms", **common,
         baseline=none["step_time_s"] * 1e3, ratio=psgd["step_time_s"] / none["step_time_s"])
    emit("netns_bare_step_time_1_process", bare * 1e3, "ms", **common)
    emit("netns_scaling_efficiency_none", bare / none["step_time_s"] * 100, "%", **common)
    emit("netns_scaling_efficiency_powersgd_r2", bare / psgd["step_time_s"] * 100, "%", **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps per mode (PowerSGD warms up 2)")
    parser.add_argument("--width", type=int, default=1024, help="MLP width: w -> 2w -> 2w -> w")
    parser.add_argument("--batch", type=int, default=32, help="batch per process")
    parser.add_argument("--no-netns", action="store_true", help="skip the bandwidth-limited run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phases", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.warmup < 3:
        parser.error("--warmup must be at least 3 (PowerSGD runs 2 uncompressed steps after each switch)")

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM and SIGHUP unwind like Ctrl-C, so that the children are stopped and the namespaces removed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    loopback(args)
    if args.no_netns:
        emit("skipped", None, "", run="netns_1gbit", reason="--no-netns given")
    else:
        bandwidth_limited(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as exc:
        print(f"bench_comm: interrupted ({exc or 'Ctrl-C'}); workers stopped, namespaces removed", file=sys.stderr)
        sys.exit(130)
