"""The verifier: sandboxed runs with limits, scrubbed environment, checks in order, clear one-line messages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from deepdive.codegen.spec import Spec, Stated
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


def spec(*stated: tuple, unknown: tuple = (), prompt: str = "test") -> Spec:
    """A request that states ``stated``: ``(name, value)`` or ``(name, value, words)`` each."""
    return Spec(prompt=prompt, stated=[Stated(*s) for s in stated], unknown=list(unknown))


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
    # a folder of its own: deepdive-sandbox-*, or check-* inside a warm template's deepdive-sandbox-warm-*
    assert any(part.startswith("deepdive-sandbox-") for part in cwd.split(os.sep)), cwd
    assert not os.path.exists(cwd), "the sandbox's working directory was left behind"


@pytest.mark.slow
def test_a_wrong_number_of_classes_fails_the_outputs_property() -> None:
    source = program("print('smoke ok')", header="import sys\n", contract=TORCH_CONTRACT)
    checks = []
    result = verify(source, spec=spec(("outputs", 5, "5 classes"), ("layer_count", ["Linear", 2], "2 layers")),
                    on_check=checks.append)
    assert not result.ok and not result.verified
    assert [c.name for c in checks] == ["parse", "imports", "contract", "smoke", "properties"] == [c.name for c in result.checks]
    assert checks[-1].ok is False
    assert result.message == ("verification failed: 1 stated property not met: "
                              "outputs 5 — output (8, 10): 10 units per example, not 5")
    assert [(p.name, p.status, p.text) for p in result.properties] == [
        ("outputs", "failed", "5 classes"), ("layer_count", "met", "2 layers")]

    good = verify(source, spec=spec(("outputs", 10), ("layer_count", ["Linear", 2])))
    assert good.ok and good.verified, good.message
    assert good.message is None
    assert good.checks[-1].detail == "2 of 2 stated properties met; output (8, 10)"
    assert good.properties[1].detail == "model has 2 Linear layers (1, 3)"


@pytest.mark.slow
def test_layer_count_and_mixed_precision_properties() -> None:
    source = program("print('smoke ok')", header="import sys\n", contract=TORCH_CONTRACT)
    result = verify(source, spec=spec(("outputs", 10), ("layer_count", ["Linear", 3]), ("precision", "mixed")))
    assert not result.verified
    failed = {p.name: p.detail for p in result.properties if p.status == "failed"}
    assert failed == {"layer_count": "model has 2 Linear layers (1, 3), not 3",
                      "precision": "no torch.autocast, mixed precision policy or engine autocast in the program"}


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
    want = spec(("framework", "tensorflow"), ("outputs", 3), ("layer_count", ["Dense", 2]), ("input_shape", [4]),
                ("no_layer", "Dropout"))
    result = verify(KERAS_PROGRAM, spec=want, timeout_s=240)
    assert result.verified, f"{result.message}\n{result.stderr_tail}"
    assert [p.detail for p in result.properties][:3] == [
        "the program imports TensorFlow/Keras", "output (8, 3): 3 units per example", "model has 2 Dense layers (dense, dense_1)"]
    wrong = verify(KERAS_PROGRAM, spec=spec(("framework", "torch"), ("outputs", 3)), timeout_s=240)
    assert not wrong.verified
    assert wrong.properties[0].status == "failed"
    assert wrong.properties[0].detail == "the program imports TensorFlow/Keras, not PyTorch"


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


# ------------------------------------------------------------------------------------------------
# "Verified" means every stated property was checked and met (issue #19, item 2)
# ------------------------------------------------------------------------------------------------

CNN_PROGRAM = '''
import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn


def build_model():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),{dropout}
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def example_batch(batch_size=4):
    return torch.randn(batch_size, 1, 8, 8), torch.randint(0, 10, (batch_size,))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.parse_args()
    model = build_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = example_batch()
    {autocast}
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    opt.step()
    print("smoke ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
WITH_AUTOCAST = 'with torch.autocast("cpu", dtype=torch.bfloat16):'
WITHOUT_AUTOCAST = "if True:"
DROPOUT = "\n                         nn.Dropout(0.3),"

# Every property a request for this CNN can state, as the parser would report them.
CNN_SPEC = (
    ("task", "image-classification", "classifier"), ("framework", "torch", "PyTorch"),
    ("input_shape", [1, 8, 8], "8x8 grayscale"), ("outputs", 10, "10 classes"), ("family", "cnn", "CNN"),
    ("layer_count", ["Conv2d", 2], "2 conv layers"), ("has_layer", "BatchNorm2d", "with batch norm"),
    ("no_layer", "Dropout", "without dropout"), ("precision", "mixed", "mixed precision"),
    ("loss", "CrossEntropyLoss", "cross-entropy"), ("distributed", False, "on one process"),
)


def cnn(*, dropout: bool = False, autocast: bool = True) -> str:
    return CNN_PROGRAM.format(dropout=DROPOUT if dropout else "", autocast=WITH_AUTOCAST if autocast else WITHOUT_AUTOCAST)


@pytest.mark.slow
def test_a_program_that_meets_every_stated_property_is_verified() -> None:
    result = verify(cnn(), spec=spec(*CNN_SPEC))
    assert [(p.name, p.status) for p in result.properties] == [(s[0], "met") for s in CNN_SPEC], \
        [(p.label, p.status, p.detail) for p in result.properties]
    assert result.ok and result.verified and result.message is None
    assert result.checks[-1].detail == "11 of 11 stated properties met; output (4, 10)"
    details = {p.name: p.detail for p in result.properties}
    assert details["no_layer"] == "no Dropout module among the model's 9 modules, and no functional Dropout"
    assert details["precision"].startswith("the program uses torch.autocast (line 27) (read from the source)")
    assert details["loss"] == "the program uses cross_entropy (line 28)"
    assert details["input_shape"] == "example_batch() gives inputs (4, 1, 8, 8)"


@pytest.mark.slow
@pytest.mark.parametrize(("source", "stated", "status", "detail"), [
    pytest.param(cnn(dropout=True), ("no_layer", "Dropout", "without dropout"), "failed",
                 "model has 1 Dropout module (3)", id="excluded-dropout-present"),
    pytest.param(cnn(), ("outputs", 12, "predicts the next 12"), "failed",
                 "output (4, 10): 10 units per example, not 12", id="wrong-output-units"),
    pytest.param(cnn(), ("has_layer", "LSTM", "with an LSTM"), "failed",
                 "model has no LSTM module among its 9 modules", id="required-layer-absent"),
    pytest.param(cnn(autocast=False), ("precision", "mixed", "with mixed precision"), "failed",
                 "no torch.autocast, mixed precision policy or engine autocast in the program", id="amp-asked-not-used"),
    pytest.param(cnn(), ("task", "few-shot", "a few-shot learner"), "not_checked",
                 "episodic few-shot training cannot be checked by one forward pass", id="uncheckable-task"),
])
def test_a_program_that_misses_a_stated_property_is_never_verified(source, stated, status, detail) -> None:
    result = verify(source, spec=spec(("framework", "torch"), stated))
    assert [c.name for c in result.checks] == ["parse", "imports", "contract", "smoke", "properties"]
    assert result.properties[0].status == "met"
    prop = result.properties[1]
    assert (prop.name, prop.status, prop.detail, prop.text) == (stated[0], status, detail, stated[2])
    assert not result.verified
    if status == "failed":
        assert not result.ok and not result.checks[-1].ok
        assert result.message.startswith("verification failed: 1 stated property not met: ")
        assert result.checks[-1].detail == f"{prop.label}: failed — {detail}"
    else:
        assert result.ok and result.checks[-1].ok  # nothing failed, yet not verified
        assert result.message == f"checks incomplete: 1 stated property not checked: {prop.label} — {detail}"
        assert "verified" not in result.message


@pytest.mark.slow
def test_words_of_the_prompt_not_understood_keep_the_result_from_being_verified() -> None:
    result = verify(cnn(), spec=spec(("framework", "torch"), unknown=("capsule routing",)))
    assert result.ok and [p.status for p in result.properties] == ["met"]
    assert not result.verified
    assert result.message == ("checks incomplete: part of the request was not understood, so it was not checked: "
                              "'capsule routing'")


def test_properties_are_not_checked_when_verification_stops_early() -> None:
    result = verify("def broken(:\n", spec=spec(("outputs", 10, "10 classes"), ("no_layer", "Dropout")))
    assert [(p.name, p.status, p.detail) for p in result.properties] == [
        ("outputs", "not_checked", "verification stopped at the parse check"),
        ("no_layer", "not_checked", "verification stopped at the parse check")]
    assert not result.verified and result.message.startswith("syntax error")
