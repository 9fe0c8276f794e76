"""A feature used without its extra says which ``pip install 'deepdive[extra]'`` fixes it (issue #20, finding 2).

The table in :mod:`deepdive.extras` is checked against pyproject.toml and the installed
distributions. The rest runs the real command line, real jobs and real torchrun in a real core-only
environment (tests/core_env.py): optuna, numpy, xxhash... are truly absent there.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deepdive.extras import EXTRA_OF_MODULE, describe_missing, module_not_found_in
from tests.core_env import build_core_env, core_env_vars

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300
#: Extras for working on Deepdive itself, not for a feature: no user is told to install them.
NOT_FEATURES = {"dev", "bench", "bench-serve"}

TRAIN = "import deepdive.engine as dd\nrun = dd.setup()\nrun.finish()\n"


def feature_extras() -> dict[str, set[str]]:
    """pyproject.toml's extras a user installs for a feature: extra -> its distributions' canonical names."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {extra: {canonicalize_name(Requirement(r).name) for r in reqs}
            for extra, reqs in project["optional-dependencies"].items() if extra not in NOT_FEATURES}


def installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_the_table_agrees_with_pyproject_and_the_installed_distributions():
    """Every distribution of every feature extra has a module in the table, under that extra, and nothing else is.

    Checked for the distributions installed here (all of them in a `make setup` environment but llama-cpp-python,
    which `make test-model` adds): what a distribution installs is known only from its installed files.
    """
    extras = feature_extras()
    providers = metadata.packages_distributions()  # import name -> the distributions that install it
    for module, extra in EXTRA_OF_MODULE.items():
        assert extra in extras, f"{module} -> {extra}: pyproject.toml has no extra {extra!r}"
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if dists or any(installed(d) for d in extras[extra]):
            assert dists & extras[extra], f"{module} is installed by {dists or 'nothing here'}, not by [{extra}]"
    for extra, dists in extras.items():
        for dist in filter(installed, dists):
            modules = [m for m, e in EXTRA_OF_MODULE.items() if e == extra
                       and dist in {canonicalize_name(d) for d in providers.get(m, [])}]
            assert modules, f"[{extra}] requires {dist}, but no module of it is in deepdive.extras' table"


def test_a_missing_module_names_the_extra_that_installs_it(core_python: Path):
    """Python's own ModuleNotFoundError, in an environment where optuna is truly absent."""
    probe = ("from deepdive.extras import describe_missing\n"
             "for name in ('optuna', 'xxhash', 'torch.distributed', 'pandas_is_not_here'):\n"
             "    try:\n        __import__(name)\n"
             "    except ModuleNotFoundError as exc:\n        print(describe_missing(exc))\n")
    done = subprocess.run([str(core_python), "-c", probe], capture_output=True, text=True, timeout=60,
                          env=core_env_vars(core_python.parents[1]))
    assert done.stdout.splitlines() == [
        "No module named 'optuna': pip install 'deepdive[tune]'",
        "No module named 'xxhash': pip install 'deepdive[engine]'",
        "No module named 'torch': pip install 'deepdive[engine]'",
        "No module named 'pandas_is_not_here'",  # no extra brings it: no pip line that would not help
    ], done.stderr
    assert describe_missing(ModuleNotFoundError("No module named 'cmaes'")) == \
        "No module named 'cmaes': pip install 'deepdive[tune]'"


def test_the_editors_recheck_after_install_names_each_extras_missing_modules(core_python: Path):
    """What the editor runs after pip (extension/src/common/extras.ts: EXTRAS_CHECK_SCRIPT), in the core-only env."""
    probe = "from deepdive.extras import extras_not_importable as f; print(f(['engine', 'tune', 'not-an-extra']))"
    done = subprocess.run([str(core_python), "-c", probe], capture_output=True, text=True, timeout=60,
                          env=core_env_vars(core_python.parents[1]))
    assert done.stdout.strip() == ("{'engine': ['torch', 'numpy', 'zstandard', 'xxhash'], "
                                   "'tune': ['optuna', 'scipy', 'greenlet', 'cmaes']}"), done.stderr
    from deepdive.extras import extras_not_importable

    complete = [extra for extra, dists in feature_extras().items() if all(map(installed, dists))]
    assert "engine" in complete and "tune" in complete
    assert extras_not_importable(complete) == {}  # every extra installed here is found


def test_only_a_raised_module_not_found_counts_not_a_warning_that_mentions_one():
    """torch warns "Failed to initialize NumPy: No module named 'numpy'" and goes on: not the reason a job failed."""
    assert module_not_found_in("UserWarning: Failed to initialize NumPy: No module named 'numpy'") is None
    assert module_not_found_in("[rank0]: ModuleNotFoundError: No module named 'xxhash'") == \
        "No module named 'xxhash': pip install 'deepdive[engine]'"
    runpy = ("/venv/bin/python: Error while finding module specification for 'torch.distributed.run' "
             "(ModuleNotFoundError: No module named 'torch')")
    assert module_not_found_in(runpy) == "No module named 'torch': pip install 'deepdive[engine]'"
    assert module_not_found_in("deepdive: error: No module named 'optuna': pip install 'deepdive[tune]'") == \
        "No module named 'optuna': pip install 'deepdive[tune]'"


# -- a real core-only environment ----------------------------------------------------------------


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_core_env(tmp_path_factory.mktemp("core-env"))


@pytest.fixture(scope="module")
def core_torch_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Core plus torch alone: the engine's other requirements (numpy, zstandard, xxhash) are absent."""
    return build_core_env(tmp_path_factory.mktemp("core-torch-env"), also=["torch"])


def run_cli(python: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "deepdive", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=core_env_vars(home), cwd=home)


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines, "no output"
    return lines[-1]


@pytest.mark.slow
def test_tune_without_optuna_fails_in_one_line_that_names_the_extra(core_python: Path, tmp_path: Path):
    (tmp_path / "train.py").write_text(TRAIN)
    done = run_cli(core_python, tmp_path, "tune", "train.py", "--trials", "2")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        "deepdive: error: No module named 'optuna': pip install 'deepdive[tune]'"], done.stderr


@pytest.mark.slow
def test_train_without_torch_names_the_engine_extra(core_python: Path, tmp_path: Path):
    (tmp_path / "train.py").write_text(TRAIN)
    done = run_cli(core_python, tmp_path, "train", "train.py")
    assert done.returncode != 0
    line = last_line(done)
    assert line.startswith("deepdive: error: training failed"), done.stderr[-3000:]
    assert "No module named 'torch': pip install 'deepdive[engine]'" in line, line


@pytest.mark.slow
def test_train_whose_engine_lacks_a_module_names_it_and_its_extra_once(core_torch_python: Path, tmp_path: Path):
    (tmp_path / "train.py").write_text(TRAIN)
    done = run_cli(core_torch_python, tmp_path, "train", "train.py")
    assert done.returncode != 0
    line = last_line(done)
    assert "No module named 'numpy': pip install 'deepdive[engine]'" in line, done.stderr[-3000:]
    assert line.count("No module named") == 1, line


@pytest.mark.slow
def test_a_run_that_caught_its_import_failure_says_so_not_that_the_summary_is_missing(
        core_torch_python: Path, tmp_path: Path):
    """A script whose main() is wrapped in a log-and-go-on handler exits 0 having trained nothing."""
    (tmp_path / "train.py").write_text(
        "import logging\n\ndef main():\n    import deepdive.engine as dd\n    dd.setup().finish()\n\n"
        "if __name__ == '__main__':\n    try:\n        main()\n    except Exception:\n"
        "        logging.exception('training stopped')\n")
    done = run_cli(core_torch_python, tmp_path, "train", "train.py")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "did the script call run.finish()" not in done.stdout + done.stderr
    assert "the script failed to import: No module named 'numpy': pip install 'deepdive[engine]'" in done.stdout, \
        done.stdout[-3000:]


@pytest.mark.slow
def test_a_failed_job_says_which_module_is_missing_and_the_pip_line(core_python: Path, tmp_path: Path):
    """The editor's notifications show a job's reason: a tune job started by the daemon's job manager."""
    from deepdive.jobs.manager import JobManager
    from deepdive.jobs.store import JobStore
    from deepdive.protocol import JobStartParams

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)

    async def tune() -> str:
        manager = JobManager(JobStore(tmp_path / "state"), python=str(core_python), workspace=str(ws))
        job = await manager.start(JobStartParams(kind="tune", options={"path": "train.py", "trials": 2}))
        done = await asyncio.wait_for(manager.wait(job.id), TIMEOUT)
        assert done.state == "failed"
        return done.reason or ""

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEEPDIVE_HOME", str(tmp_path / "home"))
        patch.delenv("PYTHONPATH", raising=False)
        reason = asyncio.run(tune())
    assert reason == "exit code 1: No module named 'optuna': pip install 'deepdive[tune]'", reason


@pytest.fixture(scope="module")
def core_optuna_torch_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Core plus optuna and torch alone: scipy (tune's gp sampler) and the engine's numpy, xxhash... are absent."""
    return build_core_env(tmp_path_factory.mktemp("core-optuna-env"), also=["optuna", "torch"])


TUNE = ("import deepdive.engine as dd\nrun = dd.setup()\nlr = run.suggest('lr', 1e-4, 1e-1, log=True, default=3e-3)\n"
        "run.log(loss=lr)\nrun.finish()\n")


@pytest.mark.slow
@pytest.mark.parametrize("args, line", [
    (["--sampler", "gp"], r"deepdive: error: the gp sampler needs scipy: pip install 'deepdive\[tune\]'"),
    ([], r"deepdive: error: a tune worker could not start: No module named '(numpy|xxhash|zstandard)': "
         r"pip install 'deepdive\[engine\]'"),
])
def test_tune_names_the_extra_its_sampler_or_its_workers_lack(core_optuna_torch_python: Path, tmp_path: Path,
                                                              args: list[str], line: str):
    (tmp_path / "train.py").write_text(TUNE)
    done = run_cli(core_optuna_torch_python, tmp_path, "tune", "train.py", "--trials", "2", *args)
    assert done.returncode != 0
    assert re.fullmatch(line, last_line(done)), done.stderr[-3000:]
