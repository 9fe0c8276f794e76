"""Warm templates: checks forked from a process that has imported torch (issue 19, item 7).

What a user relies on: a forked check trains a torch model without hanging; checks reuse one template
and find torch imported; a check sees nothing an earlier check of the same template left (files in
/tmp, /dev/shm or beside its work folder, processes, System V IPC objects) and can neither trace nor
read its template; the template outlives the worker thread that started it, and dies with the process
that owns it or after its idle time; where a template cannot serve a check, the check starts cold and
says why. The sandbox's own guarantees on the warm path (time limit, memory, fork bomb, setsid escape,
/proc, network, files) are tested in test_sandbox.py, on both paths.

Real programs in real sandboxes and real templates; no mocks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Optional

import pytest

from deepdive.codegen import containment, warm
from deepdive.codegen.sandbox import run_sandboxed

NAMESPACE_LAYERS = [None, "bwrap", "unshare", "bwrap+userns", "unshare+userns"]
TF_COLD = "TensorFlow programs start cold: TensorFlow starts threads when imported, so it cannot be forked safely"


def layer_or_skip(layer: Optional[str]) -> Optional[str]:
    if layer is None:
        return None
    from deepdive.codegen import isolation

    reason = isolation.unavailable_reason(layer, sys.executable)
    if reason:
        pytest.skip(f"{layer}: {reason}")
    return layer


def check(source: str, *, layer: Optional[str] = None, timeout_s: float = 120, memory_mb: Optional[int] = 4096,
          template: str = "torch", **kwargs):
    """Run ``source`` as program.py through the warm path (``layer`` None: the automatic choice)."""
    if layer is not None:
        kwargs["isolation"] = layer
    return run_sandboxed(["program.py", "--smoke"], files={"program.py": textwrap.dedent(source)},
                         timeout_s=timeout_s, memory_mb=memory_mb, template=template, **kwargs)


def last_json(res) -> dict:
    assert res.returncode == 0, (res.returncode, res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


TRAIN = '''
import json, sys, time
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
torch.set_num_threads(2)
a = np.random.rand(400, 400)
blas = float((a @ a).sum())  # OpenBLAS's threads, stopped at the template's fork, start again here
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 28 * 28, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
losses = []
for x, y in DataLoader(data, batch_size=16, num_workers=2):  # worker processes forked from the check
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
big = torch.randn(512, 512)
print(json.dumps({"argv": sys.argv, "threads": torch.get_num_threads(), "steps": len(losses),
                  "finite": all(l == l for l in losses), "matmul": float((big @ big).sum()) == float((big @ big).sum()),
                  "blas": blas > 0}))
'''


def test_a_forked_check_trains_a_model_with_threads_and_worker_processes_without_hanging() -> None:
    res = check(TRAIN, timeout_s=120)
    assert res.start == "warm template", res.start
    report = last_json(res)
    assert report == {"argv": ["program.py", "--smoke"], "threads": 2, "steps": 4, "finite": True, "matmul": True,
                      "blas": True}
    assert not res.timed_out and res.seconds < 60


IDENTITY = '''
import json, os, sys
preloaded = "torch" in sys.modules  # before the program imports anything
import tempfile
template = open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19]  # the start time of the namespace's PID 1
print(json.dumps({"preloaded": preloaded, "template": template, "cwd": os.getcwd(), "home": os.environ["HOME"],
                  "tmpdir": tempfile.gettempdir(), "files": sorted(os.listdir(".")), "name": __name__,
                  "file": __file__, "path0": sys.path[0]}))
open("mine.txt", "w").write("left by this check")
'''


def test_checks_reuse_one_template_each_in_a_fresh_work_folder() -> None:
    first, second = check(IDENTITY), check(IDENTITY)
    a, b = last_json(first), last_json(second)
    assert first.start == second.start == "warm template"
    assert a["preloaded"] and b["preloaded"], "the program did not find torch imported"
    assert a["template"] == b["template"], "the second check did not run in the first one's template"
    assert a["cwd"] != b["cwd"] and a["home"] == a["tmpdir"] == a["cwd"] and b["home"] == b["tmpdir"] == b["cwd"]
    assert a["files"] == b["files"] == ["program.py"], "a check saw another's files in its work folder"
    assert not os.path.exists(a["cwd"]), "the first check's work folder outlived it"
    assert a["name"] == "__main__" and a["file"] == os.path.join(a["cwd"], "program.py") and a["path0"] == a["cwd"]


LEAVE = '''
import ctypes, json, os, time
left = {}
for path in ("/tmp/left-behind", "/dev/shm/left-behind", os.path.join(os.path.dirname(os.getcwd()), "left-behind")):
    try:
        with open(path, "w") as f:
            f.write("from an earlier check")
        left[path] = True
    except OSError:
        left[path] = False
libc = ctypes.CDLL(None, use_errno=True)
left["shm"] = libc.shmget(0, 4096, 0o1666)  # IPC_PRIVATE | IPC_CREAT: outlives the process unless removed
if os.fork() == 0:  # a detached process that never execs: it carries no marker of this check
    os.setsid()
    if os.fork() == 0:
        os.closerange(0, 3)
        while True:
            time.sleep(0.05)
    os._exit(0)
print(json.dumps(left))
'''

LOOK = '''
import json, os
procs = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (os.getpid(), os.getppid(), 1)]
with open("/proc/sysvipc/shm") as f:
    shm = f.read().splitlines()[1:]
tmp = [n for n in os.listdir("/tmp") if not n.startswith("deepdive-sandbox-warm-")]  # the work folders' parent
print(json.dumps({"tmp": sorted(tmp), "shm_dir": sorted(os.listdir("/dev/shm")),
                  "beside": os.path.exists(os.path.join(os.path.dirname(os.getcwd()), "left-behind")),
                  "processes": procs, "sysv": shm}))
'''


@pytest.mark.parametrize("layer", NAMESPACE_LAYERS, ids=lambda v: v or "auto")
def test_a_check_finds_nothing_an_earlier_check_left(layer) -> None:
    layer = layer_or_skip(layer)
    baseline = last_json(check(LOOK, layer=layer))
    leaving = check(LEAVE, layer=layer)
    left = last_json(leaving)
    assert left["/tmp/left-behind"] and left["/dev/shm/left-behind"] and left["shm"] >= 0, left
    after = last_json(check(LOOK, layer=layer))
    assert after == baseline, f"a check saw what an earlier one left: {after} (before it: {baseline})"
    assert after["processes"] == [] and after["sysv"] == []


TRACE = '''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
    attached = libc.ptrace(16, pid, 0, 0) == 0  # PTRACE_ATTACH
    if attached:
        libc.ptrace(17, pid, 0, 0)
    try:
        open(f"/proc/{pid}/mem", "rb").close()
        mem = True
    except OSError:
        mem = False
    out[pid] = [attached, mem]
print(json.dumps(out))
'''


@pytest.mark.parametrize("layer", NAMESPACE_LAYERS, ids=lambda v: v or "auto")
def test_a_check_can_neither_trace_nor_read_its_template(layer) -> None:
    layer = layer_or_skip(layer)
    res = check(TRACE, layer=layer)
    assert res.start == "warm template"
    seen = last_json(res)
    assert seen, "the check saw no other process: the template should be visible as an ancestor"
    assert all(v == [False, False] for v in seen.values()), f"traced or read: {seen}"


def test_the_template_outlives_the_thread_that_started_it() -> None:
    """The parent-death signal follows the thread that forked a process: a template started from a
    worker thread must not die with that thread."""
    results = []
    for _ in range(2):
        worker = threading.Thread(target=lambda: results.append(check(IDENTITY)))
        worker.start()
        worker.join(timeout=180)
        time.sleep(0.3)  # the worker thread has ended; a signal tied to it would have fired by now
    first, second = (last_json(r) for r in results)
    assert results[1].start == "warm template"
    assert first["template"] == second["template"], "the template died with the worker thread that started it"


OWNER = '''
import json, sys, time
from deepdive.codegen import warm
from deepdive.codegen.sandbox import run_sandboxed
kwargs = {"isolation": sys.argv[1]} if sys.argv[1] != "auto" else {}
res = run_sandboxed(["program.py"], files={"program.py": "pass"}, timeout_s=120, memory_mb=None, template="torch",
                    **kwargs)
print(json.dumps({"start": res.start, "marker": warm.POOL.templates[0].marker, "root": warm.POOL.templates[0].root}),
      flush=True)
time.sleep(120)
'''


@pytest.mark.parametrize("layer", [None, "plain"], ids=lambda v: v or "auto")
def test_the_template_dies_with_the_process_that_owns_it(layer) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, layer or "auto"], stdout=subprocess.PIPE, text=True)
    marker = None
    try:
        line = owner.stdout.readline()
        info = json.loads(line)
        marker = info["marker"]
        assert info["start"] == "warm template"
        assert containment.marked_pids(marker), "the template is not running"
        owner.send_signal(signal.SIGKILL)  # no cleanup at all
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while containment.marked_pids(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert containment.marked_pids(marker) == [], "the template outlived the process that owned it"
    finally:
        owner.kill()
        owner.wait()
        if marker:
            containment.kill_marked(marker)
            shutil.rmtree(info["root"], ignore_errors=True)  # its owner died before it could remove it


def test_an_idle_template_is_retired(monkeypatch) -> None:
    monkeypatch.setattr(warm, "IDLE_S", 1.0)
    res = check("pass", isolation="plain")  # its own template (other tests' templates are retired too)
    assert res.start == "warm template"
    markers = [t.marker for t in warm.POOL.templates]
    deadline = time.monotonic() + 20
    while (warm.stats()["alive"] or any(containment.marked_pids(m) for m in markers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert warm.stats()["alive"] == 0, "an idle template was kept"
    assert not any(containment.marked_pids(m) for m in markers), "a retired template's processes survived"


def test_a_timed_out_check_retires_its_template_with_everything_in_it() -> None:
    warm.POOL.retire_all()
    before = last_json(check(IDENTITY))
    [marker] = [t.marker for t in warm.POOL.templates]
    res = check("import os\nif os.fork() == 0:\n    os.setsid()\nwhile True:\n    pass\n", timeout_s=2)
    assert res.timed_out and res.start == "warm template" and res.seconds < 2 + 1
    assert containment.marked_pids(marker) == [], "the retired template's namespace kept a process"
    after = last_json(check(IDENTITY))
    assert after["template"] != before["template"], "the check after a timeout ran in the same template"


def test_programs_run_as_python_would_run_them() -> None:
    source = '''
import atexit, sys, threading, time
atexit.register(lambda: print("atexit ran", flush=True))
def late():
    time.sleep(0.3)
    print("thread joined", flush=True)
threading.Thread(target=late).start()
print("read:", sys.stdin.read().strip())
raise SystemExit(3)
'''
    res = check(source, stdin="from the daemon\n")
    assert res.start == "warm template" and res.returncode == 3
    assert res.stdout.splitlines() == ["read: from the daemon", "thread joined", "atexit ran"], res.stdout
    failing = check("def f():\n    raise ValueError('shapes do not match')\nf()\n")
    assert failing.returncode == 1 and failing.stderr.rstrip().endswith("ValueError: shapes do not match")
    frames = [ln for ln in failing.stderr.splitlines() if ln.strip().startswith("File ")]
    assert frames and all("program.py" in ln for ln in frames), failing.stderr


def test_checks_that_cannot_be_forked_start_cold_and_say_why(monkeypatch) -> None:
    tf = check("print('ok')", template="tensorflow")
    assert tf.stdout == "ok\n"
    assert tf.start == f"cold start ({TF_COLD})"
    small = check("print('ok')", memory_mb=512)
    assert small.stdout == "ok\n" and small.start.startswith("cold start (the 512 MiB address-space limit leaves "
                                                             "too little room beside the template's"), small.start
    monkeypatch.setenv("DEEPDIVE_SANDBOX_WARM", "0")
    off = check("print('ok')")
    assert off.stdout == "ok\n" and off.start == "cold start (DEEPDIVE_SANDBOX_WARM=0)"
    assert off.describe().startswith(f"sandbox {off.isolation}: cold start (DEEPDIVE_SANDBOX_WARM=0), ")


TORCH_PROGRAM = '''
import sys
import torch
from torch import nn


def build_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 10))


def example_batch(batch_size=8):
    return torch.randn(batch_size, 4), torch.randint(0, 10, (batch_size,))


def main():
    if "--smoke" in sys.argv:
        x, y = example_batch()
        loss = nn.functional.cross_entropy(build_model()(x), y)
        loss.backward()
        print(f"smoke ok, loss {loss.item():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def test_verify_forks_both_runs_of_a_torch_program_and_says_so() -> None:
    from deepdive.codegen.verify import verify

    served = warm.stats()["checks"]
    result = verify(TORCH_PROGRAM, None, timeout_s=120)
    assert result.ok, result.message
    smoke = next(c for c in result.checks if c.name == "smoke")
    assert "warm template, scrubbed environment" in smoke.detail, smoke.detail
    assert warm.stats()["checks"] - served == 2, "the smoke run and the property run were not both forked"


def test_a_generate_request_starts_the_template_its_checks_use() -> None:
    """The template is started when the request arrives (it imports torch while the program is
    written), and both checks of the program are forked from that one template."""
    from deepdive.codegen import pipeline
    from deepdive.codegen.generation import GenerateParams

    warm.POOL.retire_all()
    before = warm.stats()
    phases = {}

    def on_partial(partial) -> None:
        if partial.kind == "phase":
            phases.setdefault(partial.text, time.monotonic())

    result = pipeline.generate(GenerateParams(prompt="a 3-layer CNN for MNIST", backend="builtin"),
                               on_partial=on_partial)
    after = warm.stats()
    smoke = next(c for c in result.checks if c.name == "smoke")
    assert smoke.ok and "warm template, scrubbed environment" in smoke.detail, smoke.detail
    assert after["started"] - before["started"] == 1, "the checks started another template than the request's"
    [template] = warm.POOL.templates
    assert template.started < phases["verifying"], "the template was started by the checks, not by the request"
    assert after["checks"] - before["checks"] == 2
    assert warm.prewarm("tensorflow") == TF_COLD
