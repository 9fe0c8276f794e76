"""The environment report carries the newest successful deep check (issue #20 finding 5: results where the user looks)."""

from __future__ import annotations

from deepdive.doctor import deep_check_summary
from deepdive.protocol import JobInfo


def _job(i: int, state: str = "succeeded", kind: str = "doctor-deep", result: dict | None = None) -> JobInfo:
    return JobInfo(id=f"j{i}", kind=kind, title="t", state=state, argv=[], cwd="/", created_at=100.0 + i,
                   ended_at=110.0 + i, result=result)


GOOD = {"torch": "2.13.0+cpu", "import_s": 1.5, "cuda": False,
        "matmul": [{"device": "cpu", "name": "Xeon", "dtype": "float32", "size": 1024, "gflops": 60.5}]}


def test_the_newest_succeeded_deep_check_is_the_reports():
    jobs = [_job(5, state="failed", result=GOOD), _job(4, kind="train", result=GOOD), _job(3, result=GOOD),
            _job(2, result={**GOOD, "torch": "old"})]  # newest first, as the store lists them
    summary = deep_check_summary(jobs)
    assert summary is not None and summary.job_id == "j3" and summary.measured_at == 113.0
    assert summary.torch == "2.13.0+cpu" and summary.import_s == 1.5
    assert [(m.device, m.dtype, m.gflops) for m in summary.matmul] == [("cpu", "float32", 60.5)]


def test_no_deep_check_or_a_malformed_result_gives_none():
    assert deep_check_summary([]) is None
    assert deep_check_summary([_job(1, result={"matmul": [{"device": "cpu"}]})]) is None
