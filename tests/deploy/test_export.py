"""``deploy export``: every form gives the eager model's outputs at batch sizes 1, 3 and 8 (digits CNN and
the polarity BERT), a form that fails is recorded with its reason while the others are written, bad input
is one DeployError line, a class defined in the user's script loads in another process, and a re-export
that fails half-way leaves the previous files whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deepdive.deploy.errors import DeployError
from deepdive.deploy.export import TOLERANCE, export
from deepdive.deploy.manifest import read
from deepdive.deploy.runners import open_runner
from deepdive.deploy.source import load_source

from tests.deploy import _export_scripts as scripts
from tests.deploy.conftest import DIGITS_SCRIPT, REPO

ALL = ("eager", "torchscript", "pt2", "onnx", "int8")
POLARITY_SCRIPT = REPO / "server" / "examples" / "polarity_bert.py"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits_all(digits_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("digits_all")
    torch.set_num_threads(1)
    export(load_source(str(DIGITS_SCRIPT), str(digits_model)), folder, forms=ALL)
    return folder


def _rows(folder: Path, batch: int) -> list[np.ndarray]:
    manifest = read(folder)
    rows = manifest.example_rows(folder)
    return [rows[spec.name][:batch] for spec in manifest.inputs]


def _eager(model: torch.nn.Module, inputs: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(*[torch.from_numpy(a) for a in inputs]).numpy()


def test_every_digits_form_gives_the_eager_outputs_at_batch_1_3_8(digits_all: Path, digits_model: Path) -> None:
    manifest = read(digits_all)
    assert set(manifest.forms) == set(ALL) and manifest.failed == {}
    assert manifest.forms["onnx"]["opset"] >= 17 and manifest.forms["int8"]["mode"] == "static"
    model = torch.load(digits_model, weights_only=False).eval()  # the trained model, not the exported file
    for form in ALL:
        runner = open_runner(digits_all, manifest, form)
        for batch in (1, 3, 8):
            inputs = _rows(digits_all, batch)
            (got,) = runner.run(inputs)
            want = _eager(model, inputs)
            assert got.shape == want.shape == (batch, 10)
            if form == "int8":  # int8 logits differ by more than a float tolerance: the classes must agree
                assert np.mean(got.argmax(1) == want.argmax(1)) >= 2 / 3, form
            else:
                assert np.abs(got - want).max() <= TOLERANCE, form
        assert manifest.forms[form]["checked_batches"] == [1, 3, 8]
        assert manifest.forms[form]["max_abs_diff"] <= (0.5 if form == "int8" else TOLERANCE)
    assert manifest.forms["int8"]["top1_agreement"] >= 0.95  # over the 64 example rows (measured: 63 of 64)
    assert (digits_all / manifest.forms["int8"]["file"]).stat().st_size < (digits_all / "model.pt").stat().st_size / 2


def test_polarity_bert_int64_ids_every_form_gives_the_eager_outputs(tmp_path: Path) -> None:
    from deepdive.examples.polarity import default_data_dir

    if not Path(default_data_dir()).is_dir():
        pytest.skip(f"the rt-polarity data is not at {default_data_dir()} (its example inputs are its sentences)")
    source = load_source(str(POLARITY_SCRIPT))  # build_model(): untrained, the real shape and vocabulary
    manifest = export(source, tmp_path, forms=ALL)
    assert manifest.inputs[0].datatype == "INT64" and manifest.inputs[0].shape == [-1, 64]
    assert set(manifest.forms) == set(ALL), manifest.failed
    assert manifest.forms["int8"]["mode"] == "dynamic"
    for batch in (1, 3, 8):
        inputs = _rows(tmp_path, batch)
        want = _eager(source.model, inputs)
        for form in ALL:
            (got,) = open_runner(tmp_path, manifest, form).run(inputs)
            limit = 0.05 if form == "int8" else TOLERANCE
            assert np.abs(got - want).max() <= limit, (form, batch)


def test_a_form_that_fails_is_recorded_with_its_reason_and_the_others_written(tmp_path: Path) -> None:
    source = load_source(str(scripts.write(tmp_path, "branchy", scripts.BRANCHY)))
    folder = tmp_path / "export"
    manifest = export(source, folder, forms=("torchscript", "pt2", "onnx"))
    assert set(manifest.forms) == {"eager", "torchscript"} and set(manifest.failed) == {"pt2", "onnx"}
    for form, reason in manifest.failed.items():
        assert reason and "\n" not in reason and len(reason) <= 300, form
    assert "input values" in manifest.failed["pt2"]  # Python control flow on a tensor's value
    on_disk = json.loads((folder / "deploy.json").read_text())
    assert on_disk["failed"] == manifest.failed and set(on_disk["forms"]) == {"eager", "torchscript"}
    assert (folder / "model.ts").is_file() and not (folder / "model.pt2").exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "no such script"),
    ("no_build", "defines no build_model()"),
    ("not_tensors", "must give a tensor or a tuple of tensors"),
])
def test_bad_input_is_one_deploy_error_line(tmp_path: Path, case: str, message: str) -> None:
    path = {"missing": tmp_path / "absent.py",
            "no_build": scripts.write(tmp_path, "no_build", scripts.NO_BUILD),
            "not_tensors": scripts.write(tmp_path, "not_tensors", scripts.NOT_TENSORS)}[case]
    with pytest.raises(DeployError) as caught:
        load_source(str(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_form_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    source = load_source(str(scripts.write(tmp_path, "tiny", scripts.TINY)))
    with pytest.raises(DeployError, match="cannot export tflite"):
        export(source, tmp_path / "out", forms=("eager", "tflite"))
    assert not (tmp_path / "out" / "deploy.json").exists()


def test_a_class_defined_in_the_script_loads_in_a_fresh_process(tmp_path: Path) -> None:
    script = scripts.write(tmp_path, "tiny", scripts.TINY)
    folder = tmp_path / "export"
    manifest = export(load_source(str(script)), folder, forms=("eager", "int8"))
    assert manifest.forms["int8"]["mode"] == "dynamic" and manifest.source["module"].startswith("deepdive_script_tiny_")
    inputs = _rows(folder, 3)
    np.save(tmp_path / "x.npy", inputs[0])
    np.save(tmp_path / "want.npy", open_runner(folder, manifest, "eager").run(inputs)[0])
    check = f"""
import numpy as np, sys
from deepdive.deploy.manifest import read
from deepdive.deploy.runners import open_runner
m = read({str(folder)!r})
x, want = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'want.npy')!r})
eager = open_runner({str(folder)!r}, m, "eager")
assert type(eager.module).__name__ == "TinyNet", type(eager.module)
assert np.array_equal(eager.run([x])[0], want)
assert np.abs(open_runner({str(folder)!r}, m, "int8").run([x])[0] - want).max() < 0.05
print("loaded", type(eager.module).__module__)
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"loaded {manifest.source['module']}" in done.stdout and "main ran" not in done.stderr
    # without the script the class cannot be found: one line that says so
    script.unlink()
    gone = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert gone.returncode != 0 and "which is gone" in gone.stderr


def test_a_reexport_that_fails_half_way_leaves_the_previous_files_whole(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source = load_source(str(scripts.write(tmp_path, "tiny", scripts.TINY)))
    folder = tmp_path / "export"
    export(source, folder, forms=("eager", "pt2", "onnx"))
    before = {name: (folder / name).read_bytes() for name in ("model.pt2", "model.onnx")}

    def torn_save(program: object, f: object) -> None:
        f.write(b"half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch.export, "save", torn_save)
    manifest = export(source, folder, forms=("eager", "pt2", "onnx"))
    assert manifest.failed["pt2"] == "OSError: disk full" and "onnx" in manifest.forms
    assert (folder / "model.pt2").read_bytes() == before["model.pt2"]  # the previous file, not half of one
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_script_loaded_twice_in_one_process_still_exports_the_first_model(tmp_path: Path) -> None:
    script = scripts.write(tmp_path, "tiny", scripts.TINY)
    first = load_source(str(script))
    second = load_source(str(script))  # e.g. bench then export in one process: the script is not run again
    assert type(first.model) is type(second.model)
    manifest = export(first, tmp_path / "out", forms=("eager",))
    assert manifest.forms["eager"]["max_abs_diff"] == 0.0


def test_a_model_saved_by_the_script_run_as_main_exports_and_loads_elsewhere(tmp_path: Path) -> None:
    script = scripts.write(tmp_path, "trainer", scripts.SAVES_UNDER_MAIN)
    saved = tmp_path / "trainer.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(saved)], check=True, env=env, timeout=120)
    source = load_source(str(script), str(saved))  # `__main__.TinyNet` read from the script imported here
    folder = tmp_path / "export"
    export(source, folder, forms=("eager",))
    check = (f"from deepdive.deploy.manifest import read; from deepdive.deploy.runners import open_runner; "
             f"r = open_runner({str(folder)!r}, read({str(folder)!r}), 'eager'); print(type(r.module).__module__)")
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == source.module
