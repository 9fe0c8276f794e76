"""The process the daemon's static analysis runs in, apart from the event loop.

Running the rules in a thread of the daemon was not enough: :func:`ast.parse` and the rules hold the GIL, and
on a busy machine the operating system deschedules the thread while it holds it, so the event loop waited
hundreds of milliseconds for a ``deepdive/version`` answer (p99 0.25–0.75 s while a 2,000-line file was
analysed back to back, ``bench/bench_diagnostics_lsp.py``). One worker process has a GIL of its own: the loop
only waits for a pipe.

This module is what that process imports: the rules and nothing of the daemon's (no lsprotocol, no pygls,
no torch), so it starts in a fraction of a second. :class:`AnalysisWorker` starts it on first use and again
after it died.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Optional, TypeVar

import attrs

from deepdive.diagnose.rules import Finding, analyze
from deepdive.diagnose.rules.base import Context

log = logging.getLogger("deepdive.daemon.diagnostics")

T = TypeVar("T")


@attrs.frozen
class Analysis:
    """The findings of one version of a document, with the rule codes that were turned off."""

    version: Optional[int]
    lines: tuple[str, ...]
    findings: tuple[Finding, ...]
    disabled: frozenset[str]


def analyse_source(source: str, path: str, disabled: frozenset[str], version: Optional[int]) -> Analysis:
    """Every enabled rule's findings in ``source`` (in the worker process)."""
    findings = tuple(analyze(source, path, disabled))
    return Analysis(version=version, lines=tuple(source.splitlines(keepends=True)), findings=findings,
                    disabled=disabled)


def first_step_loop(source: str, path: str) -> Optional[int]:
    """The 1-based line of the file's first training step loop, None when it has none (or does not parse)."""
    try:
        loops = Context(source, path).step_loops
    except (SyntaxError, ValueError):
        return None
    return min((loop.lineno for loop in loops), default=None)


def _ready() -> bool:
    return True


PARENT_POLL_S = 1.0


def _end_with_the_daemon() -> None:
    """The worker's initializer: end when the daemon that started it ends, however it ends.

    The pool's call queue gives the worker both ends of its pipe, so a daemon killed with SIGKILL never shows
    it an end of file: without this, the worker waited forever, holding the daemon's stderr open (whoever read
    that stderr to its end — a test harness, an editor — then waited with it). PR_SET_PDEATHSIG (Linux) ends it
    at once; a thread that notices a new parent process covers the rest.
    """
    import os
    import threading
    import time

    from deepdive.procutil import die_with_parent

    die_with_parent()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="deepdive-parent-watch", daemon=True).start()


class AnalysisWorker:
    """One analysis process (``spawn``: the daemon has threads, a forked copy of them is unsafe)."""

    def __init__(self) -> None:
        self._pool: Optional[ProcessPoolExecutor] = None

    def start(self) -> None:
        """Start the process now (it imports the rules while the daemon goes on)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_end_with_the_daemon)
            self._pool.submit(_ready)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker process; a worker that died is replaced for the next call."""
        self.start()
        assert self._pool is not None
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            log.error("the diagnostics worker process died; a new one starts with the next analysis")
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        """Stop the process (the daemon is shutting down)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
