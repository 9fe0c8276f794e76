"""The verifier: sandboxed runs with limits, scrubbed environment, checks in order, clear one-line messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from deepdive.codegen.intent import Intent
from deepdive.codegen.verify import verify

CONTRACT = '''
def build_model():
    return None


def example_batch(batch_size=8):
    return None, None
'''


def program(smoke_body: str, *, header: str = "import os\nimport sys\n", contract: str = CONTRACT) -> str:
    """A program that follows the contract; ``--smoke`` runs ``smoke_body``."""
    return header + contract + textwrap.dedent('''

def main():
    if "--smoke" in sys.argv:
{body}
    return 0


if __name__ == "__main__":
    sys.exit(main())
''').format(body=textwrap.indent(textwrap.dedent(smoke_body).strip(), " " * 8))


TORCH_CONTRACT = '''
import torch
from torch import nn


def build_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 10))


def example_batch(batch_size=8):
    return torch.randn(batch_size, 4), torch.randint(0, 10, (batch_size,))
'''


def intent(**fields) -> Intent:
    return Intent(**{"prompt": "test", "task": "image-classification", "architecture": "mlp", **fields})


def test_infinite_loop_hits_the_time_limit() -> None:
    result = verify(program("while True:\n    pass"), None, timeout_s=3)
    assert not result.ok
    assert result.message == "smoke run exceeded the 3 s time limit"
    assert [c.name for c in result.checks] == ["parse", "imports", "contract", "smoke"]
    assert result.checks[-1].ok is False and result.checks[-1].seconds < 20


def test_time_limit_kills_the_whole_process_group(tmp_path) -> None:
    marker = tmp_path / "child-alive"
    body = f'''
import subprocess
subprocess.Popen([sys.executable, "-c", "import time, pathlib; time.sleep(4); pathlib.Path({str(marker)!r}).write_text('x')"])
while True:
    pass
'''
    result = verify(program(body, header="import os\nimport sys\n"), None, timeout_s=2)
    assert result.message == "smoke run exceeded the 2 s time limit"
    import time

    time.sleep(4)
    assert not marker.exists(), "the smoke run's child outlived the time limit"


def test_memory_bomb_is_stopped_with_a_clear_message() -> None:
    body = '''
hog = []
while True:
    hog.append(bytearray(64 * 1024 * 1024))
'''
    result = verify(program(body), None, timeout_s=60, memory_mb=512)
    assert not result.ok
    assert result.message == "smoke run ran out of memory (limit 512 MiB)"
    assert "MemoryError" in result.stderr_tail


def test_missing_import_is_named_with_the_pip_command() -> None:
    source = program("pass", header="import os\nimport sys\nimport surely_not_installed_pkg.sub\nfrom sklearn import svm\n")
    result = verify(source, None)
    assert not result.ok and result.checks[-1].name == "imports"
    assert "'surely_not_installed_pkg'" in result.message and "pip install surely-not-installed-pkg" in result.message
    assert "\n" not in result.message


def test_guarded_optional_imports_are_not_required() -> None:
    header = "import os\nimport sys\ntry:\n    import surely_not_installed_pkg\nexcept ImportError:\n    pass\n"
    result = verify(program("print('ok')", header=header), None, timeout_s=30)
    assert [c.name for c in result.checks][:4] == ["parse", "imports", "contract", "smoke"]
    assert all(c.ok for c in result.checks[:4])


def test_program_without_build_model_fails_contract() -> None:
    contract = "\ndef example_batch(batch_size=8):\n    return None, None\n"
    result = verify(program("pass", contract=contract), None)
    assert not result.ok and [c.name for c in result.checks] == ["parse", "imports", "contract"]
    assert "no build_model()" in result.message


def test_program_without_smoke_option_fails_contract() -> None:
    source = "import sys\n" + CONTRACT + "\ndef main():\n    return 0\n\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
    result = verify(source, None)
    assert result.checks[-1].name == "contract" and "--smoke" in result.message


def test_syntax_error_fails_parse() -> None:
    result = verify("def broken(:\n    pass\n", None)
    assert [c.name for c in result.checks] == ["parse"]
    assert result.message.startswith("syntax error at line 1")


def test_failing_smoke_run_reports_the_last_error_line() -> None:
    result = verify(program("raise RuntimeError('shapes do not match')"), None, timeout_s=30)
    assert result.checks[-1].name == "smoke"
    assert result.message == "smoke run failed (exit 1): RuntimeError: shapes do not match"


def test_environment_is_scrubbed_and_the_temp_dir_removed(monkeypatch) -> None:
    monkeypatch.setenv("DEEPDIVE_TEST_SECRET", "s3cret-token")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    body = '''
leaked = [k for k in ("DEEPDIVE_TEST_SECRET", "HF_TOKEN") if k in os.environ]
if leaked or "s3cret" in repr(dict(os.environ)):
    print("leaked:", leaked)
    sys.exit(3)
assert os.environ["HOME"] == os.getcwd(), (os.environ["HOME"], os.getcwd())
assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
print("cwd=" + os.getcwd())
'''
    result = verify(program(body), None, timeout_s=30)
    smoke = next(c for c in result.checks if c.name == "smoke")
    assert smoke.ok, result.message + result.stderr_tail
    cwd = smoke.detail.split("cwd=", 1)[1].strip()
    assert os.path.basename(cwd).startswith("deepdive-sandbox-")
    assert not os.path.exists(cwd), "the sandbox's working directory was left behind"


@pytest.mark.slow
def test_wrong_num_classes_fails_properties() -> None:
    source = program("print('smoke ok')", header="import sys\n", contract=TORCH_CONTRACT)
    checks = []
    result = verify(source, intent(num_classes=5, layers=2), on_check=checks.append)
    assert not result.ok
    assert [c.name for c in checks] == ["parse", "imports", "contract", "smoke", "properties"] == [c.name for c in result.checks]
    assert checks[-1].ok is False
    assert "output units 10 (expected 5" in result.message

    good = verify(source, intent(num_classes=10, layers=2))
    assert good.ok, good.message
    assert "output units 10" in good.checks[-1].detail and "2 Linear layer(s)" in good.checks[-1].detail


@pytest.mark.slow
def test_layer_count_and_autocast_expectations() -> None:
    source = program("print('smoke ok')", header="import sys\n", contract=TORCH_CONTRACT)
    result = verify(source, intent(num_classes=10, layers=3, features=frozenset({"amp"})))
    assert not result.ok
    assert "2 Linear layer(s) (expected 3)" in result.message
    assert "no autocast" in result.message


def test_verify_does_not_import_torch_in_the_caller() -> None:
    code = textwrap.dedent('''
        import sys
        from deepdive.codegen.verify import verify
        r = verify("import sys\\nraise SystemExit(0)\\n", None)
        assert r.checks[-1].name == "contract"
        assert "torch" not in sys.modules and "tensorflow" not in sys.modules
    ''')
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


KERAS_PROGRAM = '''
import sys

import numpy as np
import tensorflow as tf


def build_model():
    return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="relu"),
                                tf.keras.layers.Dense(3)])


def example_batch(batch_size=8):
    return np.random.rand(batch_size, 4).astype("float32"), np.zeros(batch_size, dtype="int64")


def main():
    if "--smoke" in sys.argv:
        build_model()(example_batch()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


@pytest.mark.slow
def test_keras_program_properties() -> None:
    pytest.importorskip("tensorflow")
    want = Intent(prompt="t", task="image-classification", architecture="mlp", framework="tensorflow", num_classes=3, layers=2)
    result = verify(KERAS_PROGRAM, want, timeout_s=240)
    assert result.ok, f"{result.message}\n{result.stderr_tail}"
    assert "output units 3" in result.checks[-1].detail and "2 Dense layer(s)" in result.checks[-1].detail
    wrong = Intent(prompt="t", task="image-classification", architecture="mlp", framework="torch", num_classes=3)
    assert "framework tensorflow (expected torch)" in verify(KERAS_PROGRAM, wrong, timeout_s=240).message


def test_compile_time_errors_fail_parse() -> None:
    source = program("pass", header="import os\nimport sys\nX = 1\n\n\ndef f():\n    print(X)\n    global X\n")
    result = verify(source, None)
    assert [c.name for c in result.checks] == ["parse"]
    assert "used prior to global declaration" in result.message


def test_cancel_kills_the_running_check_and_stops_verification() -> None:
    import threading
    import time

    cancel = threading.Event()
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    t0 = time.monotonic()
    result = verify(program("while True:\n    pass"), None, timeout_s=60, cancel=cancel)
    took = time.monotonic() - t0
    timer.cancel()
    assert result.message == "cancelled" and not result.ok
    assert [c.name for c in result.checks] == ["parse", "imports", "contract"], "no check after the cancel"
    assert took < 30, f"the smoke run was not stopped by the cancel ({took:.1f} s)"
