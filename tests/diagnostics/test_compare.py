"""*Apply and measure*: a fix with a real cost difference is measured faster with an interval above 1, the script
is untouched and its fixed copy (written beside it while measured) is gone afterwards, whatever happened."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from deepdive.diagnose.compare import FixNotFound, RunFailed, find_fix, fixed_copy_path, measure_fix

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_a_fix_that_removes_real_work_is_faster_with_its_whole_interval_above_1(tmp_path: Path):
    script = tmp_path / "workers_not_persistent.py"
    shutil.copy(FIXTURES / script.name, script)
    before, stat = script.read_bytes(), script.stat()
    copy = fixed_copy_path(script, "DD176")
    assert copy == tmp_path / ".workers_not_persistent.dd-fix-DD176.py"
    seen: list[tuple[str, bool, bool]] = []

    def on_run(done: int, total: int, arm: str) -> None:
        seen.append((arm, copy.exists(), "persistent_workers=True" in copy.read_text() if copy.exists() else False))

    result = measure_fix(script, "DD176", 18, pairs=6, steps=4, warmup=2, args=["--epochs", "100"], on_run=on_run)
    # every epoch restarts 2 worker processes in the script as it is; the fix keeps them
    assert result.verdict == "faster"
    assert result.speedup > 1 and result.ci_low > 1
    assert result.baseline_ms > result.fixed_ms
    assert result.confidence >= 0.95 and result.pairs == 6 and result.steps == 4
    assert result.title and result.code == "DD176" and result.line == 18
    # alternating pairs, the first arm alternating, and the copy was there (fixed) while the runs went on
    assert [arm for arm, _, _ in seen] == ["baseline", "fixed", "fixed", "baseline"] * 3
    assert all(exists and fixed for _, exists, fixed in seen)
    # the script as it was, and nothing left beside it
    assert script.read_bytes() == before and script.stat().st_mtime_ns == stat.st_mtime_ns
    assert not copy.exists()
    assert sorted(os.listdir(tmp_path)) == ["workers_not_persistent.py"]


def test_the_copy_is_removed_when_a_run_fails_and_the_error_is_the_scripts_own_line(tmp_path: Path):
    script = tmp_path / "fails.py"
    text = (FIXTURES / "workers_not_persistent.py").read_text()
    script.write_text(text.replace("torch.manual_seed(0)", "raise RuntimeError('no data here')"))
    with pytest.raises(RunFailed, match=r"fails\.py failed \(exit status 1\): RuntimeError: no data here"):
        measure_fix(script, "DD176", 18, pairs=6, steps=2, warmup=0)
    assert not fixed_copy_path(script, "DD176").exists()
    assert sorted(os.listdir(tmp_path)) == ["fails.py"]


def test_a_finding_that_is_not_there_or_has_no_fix_is_refused_before_anything_runs():
    source = (FIXTURES / "item_loop.py").read_text()
    with pytest.raises(FixNotFound, match=r"no DD101 finding at line 26 of item_loop\.py \(its findings: DD110@26\)"):
        find_fix(source, str(FIXTURES / "item_loop.py"), "DD101", 26)
    with pytest.raises(FixNotFound, match="DD110 at line 26 has no mechanical fix"):
        find_fix(source, str(FIXTURES / "item_loop.py"), "dd110", 26)
    with pytest.raises(FixNotFound, match="no rule DD000"):
        find_fix(source, str(FIXTURES / "item_loop.py"), "DD000", 26)
    with pytest.raises(FixNotFound, match="--pairs must be at least 6"):
        measure_fix(FIXTURES / "workers_not_persistent.py", "DD176", 18, pairs=5)
