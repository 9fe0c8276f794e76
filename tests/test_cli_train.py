"""`deepdive train` when things go wrong: one line that names the cause, never a hang.

A failed run prints one line (the worker's own reason, not torchrun's tracebacks) and exits
non-zero; ``--debug`` shows the whole output. A closed output pipe (``deepdive train … | head``)
ends the command and its job promptly. Real torchrun, real scripts, real read-only and full
file systems (tmpfs mounts in a user+mount namespace: we run as root, for whom chmod stops nothing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "server" / "examples" / "digits.py"
TIMEOUT = 300

pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "DEEPDIVE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("DEEPDIVE_HUB", None)
    return env


def deepdive(home: Path, *args: str, wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the command line (optionally inside ``wrap``, e.g. a namespace that mounted something first)."""
    argv = [sys.executable, "-m", "deepdive", *args]
    if wrap:  # e.g. ("unshare", "-Urm", "sh", "-c", "mount ... && exec \"$@\"", "sh"): argv follows as "$@"
        argv = [*wrap, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=_env(home), cwd=home)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The run failed with exactly one line of output, which names ``fragments``; no traceback anywhere."""
    everything = done.stdout + done.stderr
    assert done.returncode != 0, everything[-3000:]
    assert "Traceback" not in everything and "ChildFailedError" not in everything, everything[-3000:]
    lines = [line for line in everything.splitlines() if line.strip()]
    assert len(lines) == 1, everything[-3000:]
    assert lines[0].startswith("deepdive: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_mounts = pytest.mark.skipif(
    not _namespaces_work(), reason="unshare -Urm (user+mount namespaces) is not available: no read-only or full "
                                   "tmpfs can be made for root here")


def in_namespace_with(mount: str) -> tuple[str, ...]:
    """A prefix that runs the command in a fresh user+mount namespace after ``mount`` succeeded."""
    return ("unshare", "-Urm", "sh", "-c", f"{mount} && exec \"$@\"", "sh")


# -- refused before torchrun starts -------------------------------------------------------------


def test_a_file_that_is_not_python_is_refused_in_one_line(tmp_path):
    prose = tmp_path / "notes.txt"
    prose.write_text("These are my notes about the training run.\nNothing here is Python.\n")
    started = time.monotonic()
    done = deepdive(tmp_path, "train", str(prose))
    line = one_line_error(done, str(prose), "line 1", "not a Python script")
    assert done.returncode == 2 and time.monotonic() - started < 10, line
    assert not list((tmp_path / "runs").glob("*.log")), "no job was started"

    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\ndef main(:\n    pass\n")
    one_line_error(deepdive(tmp_path, "train", str(broken)), str(broken), "line 3")


def test_a_checkpoint_dir_that_is_a_file_is_refused_in_one_line(tmp_path):
    afile = tmp_path / "ckpt"
    afile.write_text("not a folder")
    done = deepdive(tmp_path, "train", str(DIGITS), "--checkpoint-dir", str(afile), "--", "--epochs", "1")
    one_line_error(done, "--checkpoint-dir", str(afile), "not a folder")
    assert afile.read_text() == "not a folder"


@needs_mounts
def test_a_read_only_checkpoint_dir_is_refused_in_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    done = deepdive(tmp_path, "train", str(DIGITS), "--checkpoint-dir", str(ro), "--", "--epochs", "1",
                    wrap=in_namespace_with(f"mount -t tmpfs -o ro tmpfs {ro}"))
    one_line_error(done, "--checkpoint-dir", str(ro), "Read-only file system")


# -- failures inside the run: the worker's own reason --------------------------------------------


@needs_mounts
def test_a_full_checkpoint_dir_says_no_space_left_in_one_line(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    # 256 KiB: room for the probe and the store's first files, not for a checkpoint (~1 MiB)
    wrap = in_namespace_with(f"mount -t tmpfs -o size=256k tmpfs {full}")
    args = ("train", str(DIGITS), "--checkpoint-dir", str(full / "ck"), "--", "--epochs", "1")
    line = one_line_error(deepdive(tmp_path, *args, wrap=wrap), "No space left on device", str(full / "ck"))
    assert "--debug" in line and ".log" in line, "the line says where the rest is"
    log = Path(line.split("full output: ")[1].split(";")[0].strip())
    assert "Traceback" in log.read_text(), "the job's whole output is kept in the log the line names"

    debug = deepdive(tmp_path, "--debug", *args, wrap=wrap)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "No space left on device" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("deepdive: error: "), "the one line ends it"


def test_bad_script_arguments_show_the_scripts_own_error_in_one_line(tmp_path):
    args = ("train", str(DIGITS), "--", "--epochs", "1", "--no-such-flag")
    one_line_error(deepdive(tmp_path, *args), "unrecognized arguments: --no-such-flag")
    debug = deepdive(tmp_path, "--debug", *args)
    assert debug.returncode != 0 and "usage:" in debug.stderr, debug.stderr[-2000:]


def test_a_checkpoint_dir_with_only_corrupt_checkpoints_shows_the_engines_reason(tmp_path):
    ck = tmp_path / "ck"
    first = deepdive(tmp_path, "train", str(DIGITS), "--checkpoint-dir", str(ck), "--", "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    chunks = [p for p in (ck / "chunks").rglob("*") if p.is_file()]
    assert chunks
    for chunk in chunks:  # every chunk of every checkpoint: none is intact
        chunk.write_bytes(b"garbage")
    done = deepdive(tmp_path, "train", str(DIGITS), "--checkpoint-dir", str(ck), "--json", "--", "--epochs", "2")
    everything = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in everything and "ChildFailedError" not in everything
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("deepdive: error: ") and "CheckpointError" in errors[0]
    assert str(ck) in errors[0], errors[0]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["state"] == "failed" and "CheckpointError" in out["error"]


def test_a_successful_run_loses_no_output(tmp_path):
    """A handled exception's traceback that a script prints is still shown when the run succeeds."""
    script = tmp_path / "handled.py"
    script.write_text("import traceback\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\n"
                      "print('finished fine')\n")
    done = deepdive(tmp_path, "train", str(script))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" in done.stderr and "ZeroDivisionError: division by zero" in done.stderr
    assert "finished fine" in done.stderr


# -- a closed output pipe ----------------------------------------------------------------------


def test_the_issues_pipeline_into_head_ends_promptly(tmp_path):
    """`deepdive train notes.txt 2>&1 | head -5` used to hang forever."""
    prose = tmp_path / "notes.txt"
    prose.write_text("Prose, not Python.\n")
    command = f"{_quote(sys.executable)} -m deepdive train {_quote(str(prose))} 2>&1 | head -5"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert "not a Python script" in done.stdout


def _run_with_closed_stdout(home: Path, *args: str, limit: float = 60) -> tuple[int, float]:
    """Start the command with its stdout and stderr on a pipe we close at once; (exit status, seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "deepdive", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=_env(home), cwd=home)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone, like `| head` after its lines
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
        pytest.fail(f"deepdive {' '.join(args)} hung for {limit:.0f} s with its output pipe closed")
    return code, time.monotonic() - started


def test_a_closed_output_pipe_ends_the_command_and_kills_its_job(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "chatty.py"
    script.write_text("import os, sys, time\n"
                      "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
                      "for i in range(20):\n    print('line', i, flush=True)\n"
                      "time.sleep(600)\n")
    code, seconds = _run_with_closed_stdout(tmp_path, "train", str(script), "--", str(pid_file))
    assert code == 141, "128 + SIGPIPE: what a shell reports for a writer whose reader went away"
    assert seconds < 30, f"took {seconds:.1f} s"
    assert pid_file.exists(), "the job ran"
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(worker) and psutil.Process(worker).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the job's worker outlived the command")
        time.sleep(0.1)


def test_a_failing_job_with_a_closed_output_pipe_does_not_hang(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("raise RuntimeError('the script failed')\n")
    for args in (("train", str(script)), ("--debug", "train", str(script))):
        code, seconds = _run_with_closed_stdout(tmp_path, *args)
        assert code != 0 and seconds < 45, (args, code, seconds)


def test_the_line_is_the_workers_recorded_exception_even_when_its_message_has_several_lines(tmp_path):
    """The worker's error file (written by the engine) gives the whole message; the printed traceback's
    last line would give only its first line."""
    script = tmp_path / "fails.py"
    script.write_text("import deepdive.engine as dd\n"
                      "run = dd.setup(device='cpu')\n"
                      "raise RuntimeError('no files in data/\\nlooked in ./data and $DATA_DIR: set DATA_DIR')\n")
    one_line_error(deepdive(tmp_path, "train", str(script)),
                   "RuntimeError: no files in data/ looked in ./data and $DATA_DIR: set DATA_DIR")


def test_a_worker_killed_by_a_signal_is_named(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    one_line_error(deepdive(tmp_path, "train", str(script)), "worker 0 was killed by SIGKILL")


def test_a_traceback_the_job_outlives_is_shown_while_it_runs(tmp_path):
    """Held back as a possible failure report, then shown once the job has gone on printing for a while."""
    from deepdive.cli_train import RELEASE_AFTER_S, TrainOutput
    from deepdive.protocol import OutputLine

    output = TrainOutput(tmp_path / "run.log", tmp_path / "torchrun", debug=False)
    t0 = 1000.0
    assert output.admit(OutputLine(stream="stderr", text="warming up", t=t0)) == ["warming up"]
    report = ["Traceback (most recent call last):", '  File "train.py", line 9, in <module>',
              "ValueError: a bad batch (skipped)"]
    assert all(output.admit(OutputLine(stream="stderr", text=text, t=t0 + 1)) == [] for text in report)
    assert output.admit(OutputLine(stream="stdout", text="epoch 1", t=t0 + 2)) == ["epoch 1"]
    later = OutputLine(stream="stderr", text="epoch 2 warning", t=t0 + 1 + RELEASE_AFTER_S + 0.5)
    assert output.admit(later) == [*report, "epoch 2 warning"]
    assert output.admit(OutputLine(stream="stderr", text="more", t=later.t + 1)) == ["more"]
    output.close()
    assert (tmp_path / "run.log").read_text().splitlines() == [
        "warming up", *report, "epoch 1", "epoch 2 warning", "more"]
