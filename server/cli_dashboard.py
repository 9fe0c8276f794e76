"""`deepdive dashboard`: the telemetry hub and the machine sampler in the foreground, the dashboard's URL printed
(or the URL of the one another process already serves for this state folder).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    """Register ``dashboard`` on the top-level subparsers ``sub``."""
    p = sub.add_parser("dashboard", help="serve the live dashboard and the telemetry hub to a browser",
                       description="Run the telemetry hub and the machine sampler in the foreground and print the "
                                   "dashboard's URL (with its token). `deepdive train` in another terminal streams to it.")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--interval", type=float, default=1.0, help="machine sampling period in seconds (0.1 to 60)")
    p.add_argument("--prometheus", action="store_true", help="also serve /metrics in Prometheus' text format")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from deepdive.cli import UsageError

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be from 0 to 65535")
    if not 0.1 <= args.interval <= 60:
        raise UsageError("--interval must be from 0.1 to 60 seconds")
    try:
        asyncio.run(_dashboard(args))
    except KeyboardInterrupt:
        pass
    return 0


async def _dashboard(args: argparse.Namespace) -> None:
    import os
    import signal

    from deepdive.cli import UsageError
    from deepdive.daemon.telemetry import TelemetryService
    from deepdive.jobs.store import cli_state_dir
    from deepdive.telemetry import discovery

    directory = cli_state_dir()
    live = discovery.live(directory)
    if live is not None:  # the editor's daemon (or another dashboard) already serves this store: one dashboard
        url = live.get("dashboardUrl") or live.get("url")
        print(f"dashboard: {url}", flush=True)
        print(f"(served by the {live.get('owner') or 'process'} with pid {live.get('pid')}, for {directory}; "
              f"its hub takes this folder's runs: {live.get('ingestUrl')})", flush=True)
        if not args.no_browser and url and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                            or sys.platform in ("darwin", "win32")):
            import webbrowser

            webbrowser.open(url)
        return
    service = TelemetryService(directory, lambda: [], port=args.port, prometheus=args.prometheus,
                               interval=args.interval)
    try:
        await service.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    discovery.write(directory, service.info(), dashboard_url=service.dashboard_url(), owner="deepdive dashboard")
    print(f"dashboard: {service.dashboard_url()}", flush=True)
    print(f"hub:       {service.hub.ingest_url}   (deepdive train here streams to it; "
          f"elsewhere set DEEPDIVE_HUB to this)", flush=True)
    if service.hub.static_dir is None:
        print("note: the dashboard page is not built here (make build); the hub and /stream work", flush=True)
    if not args.no_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                or sys.platform in ("darwin", "win32")):
        import webbrowser

        webbrowser.open(service.dashboard_url())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        discovery.remove(directory)
        await service.stop()
