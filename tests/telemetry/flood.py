"""A flood of large telemetry messages against a real ``deepdive dashboard`` process: its RSS and its store.

Used by ``test_memory_and_disk.py`` (at a reduced scale) and runnable on its own for the figures
the README quotes (``python -m tests.telemetry.flood --messages 1000 --kib 900``): it prints one JSON
line with the dashboard's resident memory before, right after and ``--settle`` seconds after the
flood, the size of ``metrics.db`` (and its WAL) after the dashboard stopped, and the store's stats.

The dashboard runs the daemon's own telemetry service (hub + sampler + store) in its own process,
so its resident set is the telemetry's memory and nothing else of the test's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from websockets.sync.client import connect

MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    """The resident set of ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _metric(text: str, name: str) -> Optional[float]:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


class Dashboard:
    """``deepdive dashboard --prometheus`` in a subprocess with its state in ``home``."""

    def __init__(self, home: Path, env: Optional[dict[str, str]] = None) -> None:
        self.home = Path(home)
        full_env = {**os.environ, "DEEPDIVE_HOME": str(self.home), **(env or {})}
        full_env.pop("DEEPDIVE_HUB", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deepdive", "dashboard", "--no-browser", "--prometheus", "--interval", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
        line = self.proc.stdout.readline()
        if not line.startswith("dashboard: "):
            self.proc.kill()
            raise RuntimeError(f"the dashboard did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        url = line.split()[1]
        self.token = url.split("token=", 1)[1]
        self.base = url.split("/?token=")[0]
        self.ingest = "ws" + self.base[4:] + "/ingest?token=" + self.token

    def metrics(self) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.base + "/metrics", headers={"Authorization": f"Bearer {self.token}"})
        with opener.open(request, timeout=10) as response:
            return response.read().decode()

    def counter(self, name: str) -> float:
        return _metric(self.metrics(), f"deepdive_hub_{name}_total") or 0.0

    def wait_ingested(self, messages: int, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while self.counter("ingested_messages") < messages:
            if time.monotonic() > deadline:
                raise AssertionError(f"the dashboard ingested {self.counter('ingested_messages')} of {messages}")
            time.sleep(0.1)

    def rss(self) -> int:
        return rss_bytes(self.proc.pid)

    def stop(self) -> tuple[int, str]:
        """SIGINT, as a terminal's Ctrl-C; returns the exit code and stderr."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def big_message(run: str, seq: int, chars: int, shape: str = "string") -> str:
    """One reporter-shaped message of about ``chars`` bytes.

    ``shape`` "string": one sample carrying a ``chars``-character string (the reported flood);
    "wide": ``chars // 4000`` samples of 4,000-character strings (large in bytes, no long string).
    """
    now = time.time()
    if shape == "string":
        samples = [{"t": now, "step": seq, "loss": 1.0 / (seq + 1), "note": "x" * chars}]
    else:
        samples = [{"t": now, "step": seq, "i": i, "pad": "y" * 4000} for i in range(max(1, chars // 4000))]
    return json.dumps({"type": "samples", "v": 1, "run": run, "rank": 0, "seq": seq, "dropped": 0,
                       "dropped_events": 0, "events": [], "samples": samples})


def flood(dash: Dashboard, messages: int, chars: int, run: str = "flood", shape: str = "string") -> None:
    """Send ``messages`` messages of about ``chars`` bytes, one after the other, and wait for the hub."""
    before = dash.counter("ingested_messages")
    with connect(dash.ingest, max_size=None, compression=None, proxy=None) as ws:
        for seq in range(messages):
            ws.send(big_message(run, seq, chars, shape))
    dash.wait_ingested(int(before) + messages)


def measure(home: Path, messages: int, chars: int, settle: float, env: Optional[dict[str, str]] = None,
            shapes: tuple[str, ...] = ("string",)) -> dict[str, Any]:
    """Run the flood (``messages`` of each shape, each shape its own run) against a fresh dashboard in
    ``home``; the figures as a dict."""
    dash = Dashboard(home, env)
    try:
        time.sleep(2.0)  # the first machine samples and the store are in place
        flood(dash, 3, 1000, run="warm-up")
        rss_before = dash.rss()
        started = time.monotonic()
        for shape in shapes:
            flood(dash, messages, chars, run=f"flood-{shape}", shape=shape)
        flood_s = time.monotonic() - started
        time.sleep(1.5)  # one flush of the store
        rss_after = dash.rss()
        time.sleep(settle)
        rss_later = dash.rss()
        metrics = dash.metrics()
    finally:
        code, err = dash.stop()
    db = home / "metrics.db"
    figures: dict[str, Any] = {
        "messages": messages, "shapes": list(shapes),
        "message_bytes": [len(big_message("flood", 0, chars, shape)) for shape in shapes], "flood_s": round(flood_s, 2),
        "rss_before_mib": round(rss_before / MIB, 1), "rss_after_mib": round(rss_after / MIB, 1),
        "rss_later_mib": round(rss_later / MIB, 1), "settle_s": settle,
        "rss_growth_mib": round((rss_after - rss_before) / MIB, 1),
        "rss_growth_later_mib": round((rss_later - rss_before) / MIB, 1),
        "db_bytes": db.stat().st_size if db.exists() else 0,
        "wal_bytes": (home / "metrics.db-wal").stat().st_size if (home / "metrics.db-wal").exists() else 0,
        "exit_code": code, "stderr_tail": err[-2000:],
        "hub": {name: _metric(metrics, f"deepdive_hub_{name}")
                for name in ("history_bytes", "history_evicted_entries_total", "truncated_strings_total",
                             "malformed_messages_total", "ingested_messages_total")},
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--kib", type=int, default=900, help="size of each message's string field, KiB")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to wait before the last RSS reading")
    parser.add_argument("--shape", choices=("string", "wide", "both"), default="string",
                        help="one long string per message (default), many 4,000-character strings, or both runs")
    args = parser.parse_args()
    shapes = ("string", "wide") if args.shape == "both" else (args.shape,)
    with tempfile.TemporaryDirectory() as home:
        figures = measure(Path(home), args.messages, args.kib * 1024, args.settle, shapes=shapes)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
