"""``deepdive train``'s checks before torchrun starts, and its one line when the run fails.

A failed worker used to reach the terminal as 56 to 137 lines: the worker's traceback, then
torchrun's own traceback around ``ChildFailedError``, with the one line that mattered ("checkpoint
to … failed: … No space left on device") somewhere in the middle. Now:

- a file that is not Python, and a checkpoint folder that cannot be used, are refused before
  torchrun starts (:func:`script_problem`, :func:`deepdive.cli_paths.folder_problem`);
- the job's whole output goes to a log file in the run's state folder; on the terminal the script's
  output is shown live, but a failure report (a traceback, an argparse usage message, torchrun's
  error log) is held back from its first line (:class:`TrainOutput`);
- when the run fails, one line says why (:func:`failure_reason`): the exception the worker died
  of, as the engine wrote it to torchrun's per-worker error file (:mod:`deepdive.engine.fatal`;
  the earliest one, torchrun's "root cause"), else the last exception or argparse error in the
  output; then where the full output is. ``--debug`` shows everything live instead. When the run
  succeeds, whatever was held back is printed after all: nothing is lost.
"""

from __future__ import annotations

import json
import re
import signal
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Optional

from deepdive.extras import module_not_found_in

#: Lines of a failure report kept for the terminal (the log file keeps them all).
MAX_HELD_LINES = 10_000
#: A job still printing this long after what looked like a failure report was not failing: show it.
RELEASE_AFTER_S = 10.0
#: A worker's output lines may carry torchrun's ``[rank0]:`` prefix.
_RANK_PREFIX = re.compile(r"^\[[\w-]+\]:\s?")
_FAILURE_START = re.compile(
    r"^(Traceback \(most recent call last\):"  # a Python traceback
    r"|usage: "  # argparse's usage, printed before its error line
    r"|E\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ )"  # torchrun's own error log (glog format)
)
_ARGPARSE_ERROR = re.compile(r"^\S+: error: .+")
_TORCHRUN_WRAPPER = "ChildFailedError"
_TORCHRUN_FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")


def script_problem(script: Path) -> Optional[str]:
    """Why ``script`` cannot be a training script (None: it parses as Python), in one line.

    torchrun would start a worker on any file and fail in it, 50 lines later; compiling the file
    here costs milliseconds and names the file and the line.
    """
    try:
        source = script.read_bytes()
    except OSError as exc:
        return f"cannot read {script}: {exc.strerror or exc}"
    try:
        with warnings.catch_warnings():  # e.g. invalid escape sequences: the script's business, not ours
            warnings.simplefilter("ignore")
            compile(source, str(script), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        if script.suffix == ".py":
            return f"{script} does not parse: {exc.msg}{where}: fix it and rerun"
        return (f"{script} is not a Python script: {exc.msg}{where}: train runs a Python file that uses "
                "deepdive.engine")
    except ValueError as exc:  # null bytes: a binary file
        return f"{script} is not a Python script: {exc}"
    return None


class TrainOutput:
    """A training job's output: all of it to a log file; live on the terminal but for a failure report.

    Args:
        log: the log file (created, with its folder).
        torchrun_logs: the folder torchrun keeps its per-worker error files in (``--log-dir``).
        debug: show everything live, failure reports included.
    """

    def __init__(self, log: Path, torchrun_logs: Path, debug: bool):
        self.log_path = log
        self.torchrun_logs = torchrun_logs
        self.debug = debug
        log.parent.mkdir(parents=True, exist_ok=True)
        torchrun_logs.mkdir(parents=True, exist_ok=True)
        self._log: Optional[Any] = open(log, "w", encoding="utf-8")
        self._log_error: Optional[str] = None
        self._held_since: Optional[float] = None
        self.held: deque[str] = deque(maxlen=MAX_HELD_LINES)
        self._tail: deque[str] = deque(maxlen=MAX_HELD_LINES)

    def job_env(self) -> dict[str, str]:
        """Environment for the job: torchrun reads ``--log-dir`` from ``PET_LOG_DIR`` (its ``env`` arguments)."""
        return {"PET_LOG_DIR": str(self.torchrun_logs)}

    def admit(self, line: Any) -> list[str]:
        """Keep one output line (an :class:`~deepdive.protocol.OutputLine`); the lines to show now."""
        self._keep(line.text)
        self._tail.append(line.text)
        if self.debug or line.stream != "stderr":
            return [line.text]
        if self._held_since is not None and line.t - self._held_since > RELEASE_AFTER_S:
            shown = [*self.held, line.text]  # the job went on: a traceback it printed and survived
            self.held.clear()
            self._held_since = None
            return shown
        if self._held_since is None and _FAILURE_START.match(_RANK_PREFIX.sub("", line.text)):
            self._held_since = line.t
        if self._held_since is not None:
            self.held.append(line.text)
            return []
        return [line.text]

    def tail(self) -> list[str]:
        """The job's output lines, the last :data:`MAX_HELD_LINES` of them."""
        return list(self._tail)

    def _keep(self, text: str) -> None:
        if self._log is None:
            return
        try:
            self._log.write(text + "\n")
        except OSError as exc:  # e.g. the state folder's disk is full: the terminal still shows the output
            self._log_error = exc.strerror or str(exc)
            self.close()

    def close(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            except OSError as exc:
                self._log_error = exc.strerror or str(exc)
            self._log = None

    def failure_line(self, job: Any) -> str:
        """The one line for a job that did not succeed: what happened, why, and where the rest is."""
        reason, missing = _split_missing(job.reason or "")
        what = f"training {job.state}" + (f" ({reason})" if reason else "")
        cause = None
        if job.state == "failed" and reason.startswith(("exit code", "killed by")):
            cause = failure_reason(self.torchrun_logs, self._tail)  # the worker's; not a time or memory limit
        # the worker's own exception wins; a missing module gets its pip line (e.g. torchrun without torch)
        cause = (cause and module_not_found_in(cause)) or cause or missing
        where = (f"full output: {self.log_path}" if self._log_error is None
                 else f"full output not kept in {self.log_path}: {self._log_error}")
        where += "" if self.debug else "; rerun with --debug to see it here"
        return f"{what}: {cause} ({where})" if cause else f"{what} ({where})"


def report_run(job: Any, metrics: str, output: TrainOutput, as_json: bool) -> int:
    """Print how the run went (the summary, or the one line of its failure); the command's exit status."""
    import sys

    from deepdive.cli_jobs import PipeConsole
    from deepdive.report import print_train_summary, read_run_summary

    summary = read_run_summary(Path(metrics))
    failure = output.failure_line(job) if job.state != "succeeded" else None
    if as_json:
        print(json.dumps({"job": job.id, "state": job.state, "reason": job.reason, "error": failure,
                          "metrics": metrics, "log": str(output.log_path), "summary": summary}, default=str))
    elif failure is None:
        console = PipeConsole(stderr=True, highlight=False)
        for text in output.held:  # not a failure after all (a traceback the script printed and went on)
            console.print(text, markup=False, soft_wrap=True)
        cause = None if summary else _from_output(output.tail())  # a traceback the script printed and survived
        print_train_summary(job, summary, metrics, console=PipeConsole(), cause=cause)
    if failure is not None:
        print(f"deepdive: error: {failure}", file=sys.stderr)
        code = job.exit_code or 1
        return 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N
    return 0


def _split_missing(reason: str) -> tuple[str, Optional[str]]:
    """A job's reason, and the missing module the job manager appended to it ("exit code 1: No module named …")."""
    head, _, tail = reason.partition(": ")
    return (head, tail) if tail.startswith("No module named") else (reason, None)


def failure_reason(torchrun_logs: Path, lines: Iterable[str]) -> Optional[str]:
    """Why the run failed, in one line: a worker's error file, else the job's output; None if neither says."""
    return _from_error_files(torchrun_logs) or _from_output(lines)


def _from_error_files(folder: Path) -> Optional[str]:
    """The message of the earliest error file a worker wrote in torchrun's last attempt (its "root cause").

    torchrun's layout: ``LOG_DIR/RUN_ID/attempt_N/LOCAL_RANK/error.json``; with ``--max-restarts``
    the last attempt's failure is the one that ended the run.
    """
    files = []
    for path in folder.rglob("error.json"):
        attempt = path.parent.parent.name
        try:
            number = int(attempt.removeprefix("attempt_")) if attempt.startswith("attempt_") else 0
            files.append((-number, path.stat().st_mtime, path))
        except (OSError, ValueError):
            continue
    for _, _, path in sorted(files):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            message = data["message"]
            text = message["message"] if isinstance(message, dict) else message
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(text, str) and text.strip():
            return " ".join(text.split())
    return None


def _from_output(lines: Iterable[str]) -> Optional[str]:
    """The last exception line of a Python traceback, or argparse error, in the output (not torchrun's wrapper);
    else how the first failed worker ended, as torchrun logged it (a signal, an exit status)."""
    found: Optional[str] = None
    ended: Optional[str] = None
    in_traceback = False
    for raw in lines:
        text = _RANK_PREFIX.sub("", raw)
        worker = _TORCHRUN_FAILED.search(text)
        if worker and ended is None:
            ended = _worker_end(int(worker.group(1)), worker.group(2))
        if text.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback:
            if not text.strip() or text[0].isspace():
                continue  # a frame, its source line, a caret line
            in_traceback = False
            if _TORCHRUN_WRAPPER not in text.split(":", 1)[0]:
                found = text.strip()
            continue
        if _ARGPARSE_ERROR.match(text):
            found = f"{text.strip()} (arguments after '--' go to the script)"
    return found or ended


def _worker_end(code: int, local_rank: str) -> str:
    """A worker's end without a traceback, from its exit code (negative: the signal that killed it)."""
    if code >= 0:
        return f"worker {local_rank} exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (the kernel's out-of-memory killer sends it: is memory short? see dmesg)" if name == "SIGKILL" else ""
    return f"worker {local_rank} was killed by {name}{hint}"
