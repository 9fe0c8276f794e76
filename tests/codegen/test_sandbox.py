"""The sandbox that runs generated programs: the whole process tree ends with the time limit, and the
isolation layers (bubblewrap, util-linux unshare) keep the program away from the parent's secrets, files
outside its work folder, the network and an unbounded number of processes.

Every test runs real programs in real sandboxes. Each isolation test runs once with the automatic choice
and once per layer this machine offers (``bwrap``/``unshare`` as the current user, and their
``+userns`` variants, the path a non-root user takes); a layer the machine lacks is skipped, saying why.
Each also runs on both paths a check can take: ``cold`` (a new interpreter) and ``warm`` (forked from
a template that has imported torch: :mod:`deepdive.codegen.warm`); the warm variant first makes sure
its template is ready, so that the time limits measured are the program's own.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

from deepdive.codegen.sandbox import run_sandboxed

REPO = Path(__file__).resolve().parents[2]
LAYERS = [None, "bwrap", "unshare", "bwrap+userns", "unshare+userns"]
PATHS = ["cold", "warm"]
by_path = pytest.mark.parametrize("path", PATHS)


def layer_or_skip(layer: Optional[str]) -> Optional[str]:
    """``layer`` when this machine can run it (None: the automatic choice), else skip with the reason."""
    if layer is None:
        return None
    from deepdive.codegen import isolation

    reason = isolation.unavailable_reason(layer, sys.executable)
    if reason:
        pytest.skip(f"{layer}: {reason}")
    return layer


def run(source: str, *, timeout_s: float = 30, layer: Optional[str] = None, path: str = "cold",
        memory_mb: Optional[int] = None, **kwargs):
    """Run ``source`` as program.py in the sandbox (``layer`` None: the automatic choice) on ``path``:
    ``cold``, or ``warm`` (forked from a template that is ready first; the result must say so)."""
    if layer is not None:
        kwargs["isolation"] = layer
    if path == "warm":
        kwargs["template"] = "torch"
        make_ready(**kwargs)
    res = run_sandboxed(["program.py"], files={"program.py": textwrap.dedent(source)}, timeout_s=timeout_s,
                        memory_mb=memory_mb, **kwargs)
    assert res.start == ("warm template" if path == "warm" else "cold start"), res.start
    return res


def make_ready(**kwargs) -> None:
    """A trivial check through the warm template these settings use, so that it is started and ready."""
    ready = run_sandboxed(["program.py"], files={"program.py": "pass"}, timeout_s=120, memory_mb=None,
                          **dict(kwargs, template="torch"))
    assert ready.returncode == 0 and ready.start == "warm template", (ready.start, ready.stderr[-2000:])


def ready(path: str, layer: Optional[str], **kwargs) -> None:
    """On the warm path, the template for these settings started before a test times a run."""
    if path == "warm":
        make_ready(**kwargs, **({"isolation": layer} if layer is not None else {}))


def warm_checks() -> int:
    """Checks served by warm templates in this process so far."""
    from deepdive.codegen import warm

    return warm.stats()["checks"]


def warm_up_verify(path: str, monkeypatch, **kwargs) -> None:
    """verify() on ``path``: cold with DEEPDIVE_SANDBOX_WARM=0, warm with its template made ready first."""
    if path == "cold":
        monkeypatch.setenv("DEEPDIVE_SANDBOX_WARM", "0")
    else:
        monkeypatch.delenv("DEEPDIVE_SANDBOX_WARM", raising=False)
        run("pass", path="warm", **kwargs)


def alive_with(token: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``token``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != b"Z":
            found.append(int(entry))
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


ESCAPE = '''
import os, sys, time
TOKEN = {token!r}
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:  # a grandchild in a session of its own, holding stdout and stderr open
        os.execv("/bin/sleep", [TOKEN, "20"])
    os._exit(0)
os.waitpid(pid, 0)
print("escaped", flush=True)
{tail}
'''


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_setsid_escape_ends_within_the_time_limit_with_no_survivor(layer, path) -> None:
    layer = layer_or_skip(layer)
    token = f"deepdive-escape-{uuid.uuid4().hex}"
    try:
        ready(path, layer)
        start = time.monotonic()
        res = run(ESCAPE.format(token=token, tail="while True:\n    time.sleep(0.05)"), timeout_s=3, layer=layer,
                  path=path)
        took = time.monotonic() - start
        assert res.timed_out and "escaped" in res.stdout, (res.stdout, res.stderr)
        assert took < 3 + 1, f"a setsid child kept the run going for {took:.1f} s against a 3 s limit"
        assert alive_with(token) == [], "the detached grandchild outlived the sandboxed run"
    finally:
        kill_all(alive_with(token))


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_program_that_exits_leaving_a_detached_child_returns_at_once(layer, path) -> None:
    layer = layer_or_skip(layer)
    token = f"deepdive-escape-{uuid.uuid4().hex}"
    try:
        ready(path, layer)
        start = time.monotonic()
        res = run(ESCAPE.format(token=token, tail="sys.exit(0)"), timeout_s=30, layer=layer, path=path)
        took = time.monotonic() - start
        assert res.returncode == 0 and not res.timed_out and "escaped" in res.stdout, (res.stdout, res.stderr)
        assert took < 5, f"waited {took:.1f} s on a detached child's copy of stdout"
        assert alive_with(token) == []
    finally:
        kill_all(alive_with(token))


def contract_program(smoke: str) -> str:
    """The smallest program verify() accepts: the contract's functions, ``smoke`` run under --smoke."""
    body = textwrap.indent(smoke, " " * 8)
    return ("\n\ndef build_model():\n    return None\n\n\ndef example_batch():\n    return None, None\n\n\n"
            f"def main():\n    if \"--smoke\" in sys.argv:\n{body}\n\n\nif __name__ == \"__main__\":\n    main()\n")


@by_path
def test_verify_reports_the_time_limit_for_a_setsid_escape_within_a_second(path, monkeypatch) -> None:
    from deepdive.codegen.verify import verify

    warm_up_verify(path, monkeypatch)
    token = f"deepdive-escape-{uuid.uuid4().hex}"
    source = ESCAPE.format(token=token, tail="") + contract_program("while True:\n    time.sleep(0.05)")
    try:
        served = warm_checks()
        start = time.monotonic()
        result = verify(source, None, timeout_s=3)
        smoke = result.checks[-1]
        assert result.message == "smoke run exceeded the 3 s time limit"
        assert smoke.seconds < 3 + 1 and time.monotonic() - start < 30
        assert warm_checks() - served == (1 if path == "warm" else 0), "the smoke run took the other path"
        assert alive_with(token) == []
    finally:
        kill_all(alive_with(token))


PARENT = '''
import json, sys
from deepdive.codegen.sandbox import run_sandboxed
kwargs = {"isolation": sys.argv[2]} if sys.argv[2] != "auto" else {}
if sys.argv[3] == "warm":
    kwargs["template"] = "torch"
res = run_sandboxed(["program.py"], files={"program.py": sys.argv[1]}, timeout_s=120, memory_mb=None, **kwargs)
print(json.dumps({"stdout": res.stdout, "stderr": res.stderr, "returncode": res.returncode, "start": res.start}))
'''

READ_ENVIRON = '''
import glob, json, os
secrets = [{secret!r}, {aws!r}]
found, readable = [], 0
for path in glob.glob("/proc/*/environ"):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        continue
    readable += 1
    if any(s.encode() in data for s in secrets):
        found.append(path)
if any(s in repr(dict(os.environ)) for s in secrets):
    found.append("own environment")
print(json.dumps({{"found": found, "readable": readable}}))
'''


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_the_parents_secrets_cannot_be_read_through_proc(layer, path) -> None:
    layer = layer_or_skip(layer)
    secret, aws = f"s3cret-{uuid.uuid4().hex}", f"aws-{uuid.uuid4().hex}"
    env = dict(os.environ, SECRET=secret, AWS_SECRET_ACCESS_KEY=aws)
    # A real parent started with the secrets in its environment (/proc/<pid>/environ shows the environment
    # a process was started with, not later os.environ changes).
    out = subprocess.run([sys.executable, "-c", PARENT, READ_ENVIRON.format(secret=secret, aws=aws), layer or "auto",
                          path], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["returncode"] == 0, res["stderr"]
    assert res["start"] == ("warm template" if path == "warm" else "cold start"), res["start"]
    report = json.loads(res["stdout"].strip().splitlines()[-1])
    assert report["readable"] >= 1, "the scan could not even read the program's own /proc/self/environ"
    assert report["found"] == [], f"the program read the parent's secrets from {report['found']}"


WRITE_OUTSIDE = '''
import json, sys
results = {{}}
for path in {paths!r}:
    try:
        with open(path, "w") as f:
            f.write("written from the sandbox")
        results[path] = "written"
    except OSError as exc:
        results[path] = type(exc).__name__
try:
    with open("inside.txt", "w") as f:
        f.write("ok")
    results["inside"] = "written"
except OSError as exc:
    results["inside"] = type(exc).__name__
print(json.dumps(results))
'''


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_writes_outside_the_work_folder_fail(layer, path, tmp_path) -> None:
    layer = layer_or_skip(layer)
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # writable by anyone: only the sandbox's own view can refuse the write
    name = f"deepdive-sandbox-write-probe-{uuid.uuid4().hex}.txt"
    targets = [str(outside / name), os.path.join(sysconfig.get_paths()["purelib"], name), str(REPO / name)]
    try:
        res = run(WRITE_OUTSIDE.format(paths=targets), layer=layer, path=path)
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout.strip().splitlines()[-1])
        assert report["inside"] == "written", "the work folder must stay writable"
        leaked = [p for p in targets if os.path.exists(p)]
        assert leaked == [], f"the program wrote outside its work folder: {leaked}"
        # Inside the sandbox, /tmp is a private scratch space: a path under it (a checkout in /tmp, as CI's
        # clone is) may be writable there without anything reaching the host, which the check above covers.
        scratch = os.path.realpath(tempfile.gettempdir()) + os.sep
        claimed = [p for p in targets if report[p] == "written" and not os.path.realpath(p).startswith(scratch)]
        assert claimed == [], f"the program could write outside its work folder: {claimed}"
    finally:
        for path in targets:
            if os.path.exists(path):
                os.unlink(path)


READ_OUTSIDE = '''
import json
results = {{}}
for path in {paths!r}:
    try:
        with open(path, "rb") as f:
            results[path] = "read " + str(len(f.read())) + " bytes"
    except OSError as exc:
        results[path] = type(exc).__name__
print(json.dumps(results))
'''


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_files_outside_the_sandbox_cannot_be_read(layer, path, tmp_path) -> None:
    layer = layer_or_skip(layer)
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n", encoding="utf-8")
    key.chmod(0o644)  # readable by anyone: only the sandbox's own view can refuse the read
    targets = [str(key), str(REPO / "pyproject.toml")]
    res = run(READ_OUTSIDE.format(paths=targets), layer=layer, path=path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    read = {p: r for p, r in report.items() if r.startswith("read")}
    assert read == {}, f"the program read files outside its sandbox: {read}"


CONNECT = '''
import json, socket
out = {{"interfaces": sorted(name for _, name in socket.if_nameindex())}}
for host, port in (("127.0.0.1", {port}), ("1.1.1.1", 443)):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        out[host] = "connected"
    except OSError as exc:
        out[host] = exc.errno if exc.errno is not None else type(exc).__name__
    finally:
        s.close()
print(json.dumps(out))
'''


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_there_is_no_network(layer, path) -> None:
    layer = layer_or_skip(layer)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        res = run(CONNECT.format(port=port), layer=layer, path=path)
        assert res.returncode == 0, res.stderr
        report = json.loads(res.stdout.strip().splitlines()[-1])
        assert report["127.0.0.1"] != "connected", "the program reached a socket listening on the host's loopback"
        assert report["1.1.1.1"] == errno.ENETUNREACH, f"a public address was not unreachable: {report['1.1.1.1']}"
        assert report["interfaces"] == ["lo"], report["interfaces"]
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


FORK_BOMB = '''
import os, sys, time
children = 0
for _ in range(120):
    try:
        pid = os.fork()
    except OSError as exc:
        print(f"fork failed after {{children}} children", file=sys.stderr, flush=True)
        raise
    if pid == 0:
        os.execv("/bin/sleep", [{token!r}, "8"])
    children += 1
print("forked", children)
'''


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_a_fork_bomb_is_bounded_by_the_process_limit(layer, path) -> None:
    layer = layer_or_skip(layer)
    token = f"deepdive-bomb-{uuid.uuid4().hex}"
    try:
        res = run(FORK_BOMB.format(token=token), timeout_s=30, layer=layer, max_processes=40, path=path)
        assert res.returncode != 0 and "fork failed after" in res.stderr, (res.stdout, res.stderr[-2000:])
        children = int(res.stderr.split("fork failed after ", 1)[1].split()[0])
        assert children < 40
        assert res.process_limit_hit and not res.out_of_memory and not res.timed_out
        assert res.seconds < 15
        assert alive_with(token) == []
    finally:
        kill_all(alive_with(token))


@by_path
def test_verify_names_the_process_limit_in_one_line(path, monkeypatch) -> None:
    from deepdive.codegen.verify import verify

    monkeypatch.setenv("DEEPDIVE_SANDBOX_MAX_PROCESSES", "40")
    warm_up_verify(path, monkeypatch)
    token = f"deepdive-bomb-{uuid.uuid4().hex}"
    source = "import sys\n" + f"BOMB = {FORK_BOMB.format(token=token)!r}\n" + contract_program("exec(BOMB)")
    try:
        served = warm_checks()
        result = verify(source, None, timeout_s=30)
        assert warm_checks() - served == (1 if path == "warm" else 0), "the smoke run took the other path"
        assert result.message == ("smoke run hit the sandbox's limit of 40 processes and threads "
                                  "(raise it with DEEPDIVE_SANDBOX_MAX_PROCESSES if the program needs more)")
        assert alive_with(token) == []
    finally:
        kill_all(alive_with(token))


@by_path
def test_the_result_and_the_smoke_check_say_which_protections_applied(path, monkeypatch) -> None:
    from deepdive.codegen.verify import verify

    warm_up_verify(path, monkeypatch)
    res = run("print('hello')", path=path)
    assert res.returncode == 0 and res.stdout == "hello\n"
    assert res.isolation in ("bwrap", "unshare", "bwrap+userns", "unshare+userns", "plain")
    assert "time limit: the whole process tree is killed" in res.protections
    if res.isolation != "plain":
        assert {"pid namespace", "no network", "read-only view: interpreter and libraries only"} <= set(res.protections)
    source = "import sys\n\ndef build_model():\n    return None\n\ndef example_batch():\n    return None, None\n\n" \
             "def main():\n    print('smoke ok')\n\nif __name__ == '__main__':\n    main()\n# --smoke\n"
    result = verify(source, None, timeout_s=30)
    smoke = next(c for c in result.checks if c.name == "smoke")
    assert smoke.ok and f"sandbox {res.isolation}:" in smoke.detail, smoke.detail
    started = "warm template" if path == "warm" else "cold start (DEEPDIVE_SANDBOX_WARM=0)"
    assert f"sandbox {res.isolation}: {started}, scrubbed environment" in smoke.detail, smoke.detail


@by_path
def test_plain_layer_claims_no_isolation_it_lacks(path) -> None:
    res = run("print('hello')", layer="plain", path=path)
    assert res.isolation == "plain" and res.returncode == 0
    assert not {"pid namespace", "no network", "read-only view: interpreter and libraries only"} & set(res.protections)
    assert any(p.startswith("not isolated:") for p in res.protections), res.protections


def test_marker_scan_kills_a_detached_process_that_carries_the_marker() -> None:
    from deepdive.codegen import containment

    marker = containment.new_marker()
    token = f"deepdive-marked-{uuid.uuid4().hex}"
    env = dict(os.environ, **{containment.MARKER_VAR: marker})
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", token], env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not alive_with(token) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert containment.kill_marked(marker) == [proc.pid]
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


@by_path
@pytest.mark.parametrize("layer", LAYERS, ids=lambda v: v or "auto")
def test_a_folder_the_prompt_names_is_readable_and_nothing_beside_it(layer, path, tmp_path) -> None:
    layer = layer_or_skip(layer)
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "beside.txt").write_text("not an input", encoding="utf-8")
    (tmp_path / "beside.txt").chmod(0o644)
    targets = [str(model / "config.json"), str(tmp_path / "beside.txt")]
    res = run(READ_OUTSIDE.format(paths=targets), layer=layer, read_only=[str(model)], path=path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report[targets[0]] == "read 2 bytes", report
    assert not report[targets[1]].startswith("read"), report
    assert f"also readable: {model}" in res.protections


@by_path
@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to uid 65534")
def test_root_keeps_its_uid_when_an_input_is_readable_only_by_root(path, tmp_path) -> None:
    model = tmp_path / "tiny-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "model.safetensors").chmod(0o600)  # as Hugging Face's save_pretrained writes its weights
    res = run(READ_OUTSIDE.format(paths=[str(model / "model.safetensors")]), read_only=[str(model)], path=path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {str(model / "model.safetensors"): "read 7 bytes"}
    assert any(p.startswith("uid 0 kept: uid 65534 cannot read") for p in res.protections), res.protections


@by_path
def test_an_endless_loop_ends_at_the_time_limit(path) -> None:
    res = run("while True:\n    pass\n", timeout_s=2, path=path)
    assert res.timed_out and not res.out_of_memory and res.returncode != 0
    assert res.seconds < 2 + 1, f"the run returned {res.seconds:.1f} s after the start against a 2 s limit"


@by_path
def test_a_memory_bomb_ends_with_out_of_memory(path) -> None:
    bomb = "hog = []\nwhile True:\n    hog.append(bytearray(64 * 1024 * 1024))\n"
    res = run(bomb, timeout_s=60, memory_mb=1536, path=path)  # room beside the warm template's own 0.7 GiB
    assert res.out_of_memory and not res.timed_out and res.returncode != 0, (res.returncode, res.stderr[-1000:])
    assert "MemoryError" in res.stderr
    assert "address space 1536 MiB" in res.protections
