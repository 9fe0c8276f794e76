"""The measured diagnosis: the breakdown's arithmetic on made-up spans (no torch), then real runs of planted
problems under the profiler (a per-element ``.item()`` loop, a DataLoader without workers whose Dataset works per
item), a script that ends early, and the digits example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.diagnose.measure.analysis import step_breakdown
from deepdive.diagnose.measure.breakdown import breakdown
from deepdive.diagnose.measure.lines import LINE_PREFIX, Timeline
from deepdive.diagnose.measure.trace import Span
from deepdive.diagnose.report import PROMOTE_FLOOR, read_report
from deepdive.protocol.diagnose import BREAKDOWN_PARTS

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def op(name: str, start: int, end: int, tid: int = 1) -> Span:
    return Span(name=name, start=start, end=end, tid=tid, kind="op")


def no_line(t: int):
    return None


def no_changes(a: int, b: int) -> list[int]:
    return []


# -- the breakdown on made-up spans -------------------------------------------------------------------------


def test_each_instant_goes_to_the_strongest_part_on_its_chain_and_the_parts_sum_to_the_step():
    spans = [
        op("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 0, 300),
        op("aten::stack", 100, 200),  # collate inside the loader's next: data wait, not forward
        op("aten::linear", 300, 500),
        op("aten::addmm", 350, 450),
        op("autograd::engine::evaluate_function: AddmmBackward0", 500, 650),
        op("Optimizer.step#AdamW.step", 700, 900),
        op("aten::item", 750, 760),  # inside the optimizer: the optimizer's (Adam reads its step count)
        op("aten::item", 920, 950),  # the user's own .item(): a host sync
    ]
    bd = breakdown(spans, [], [0, 1000], no_line, no_changes)
    parts = bd.parts_ns[0]
    assert parts == {"data_wait": 300, "forward": 200, "backward": 150, "optimizer": 200, "host_sync": 30,
                     "copies": 0, "communication": 0, "idle": 120}
    assert sum(parts.values()) == bd.steps_ns[0] == 1000


def test_backward_on_another_thread_fills_the_main_threads_wait_but_never_counts_twice():
    main = [op("aten::linear", 0, 100), op("aten::item", 400, 450)]
    others = [op("autograd::engine::evaluate_function: MmBackward0", 80, 420, tid=7)]
    bd = breakdown(main, others, [0, 500], no_line, no_changes)
    parts = bd.parts_ns[0]
    assert parts["backward"] == 300  # 100..400: where the main thread had no span of its own
    assert parts["forward"] == 100 and parts["host_sync"] == 50
    assert parts["idle"] == 50 and sum(parts.values()) == 500


def test_time_goes_to_the_line_current_when_it_was_spent_and_a_loader_wait_to_the_loop_that_asked():
    lines = Timeline([(0, LINE_PREFIX + "0"), (300, LINE_PREFIX + "1"), (350, LINE_PREFIX + "2"),
                      (380, LINE_PREFIX + "1")],
                     [("/w/t.py", 10), ("/w/t.py", 11), ("/w/t.py", 3)])
    spans = [op("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 0, 200),
             op("aten::addmm", 310, 340),
             op("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 345, 400)]
    bd = breakdown(spans, [], [0, 500], lines.place_at, lines.changes_between)
    # the second wait ran the user's __getitem__ (line 3) and came back to line 11: all of it is the loop's
    assert bd.lines[("/w/t.py", 10, "data_wait")].ns == 200
    assert bd.lines[("/w/t.py", 11, "data_wait")].ns == 55
    assert bd.lines[("/w/t.py", 11, "forward")].ns == 30
    assert ("/w/t.py", 3, "data_wait") not in bd.lines


def test_medians_that_add_up_past_the_step_are_scaled_to_fill_it_and_idle_is_never_negative():
    parts = [{"forward": 6_000_000, "backward": 5_000_000}, {"forward": 7_000_000, "backward": 4_000_000},
             {"forward": 5_000_000, "backward": 6_000_000}]
    b = step_breakdown(parts, 10.0)  # medians 6 + 5 = 11 ms in a 10 ms median step
    assert b.idle == 0.0
    assert sum(getattr(b, p) for p in BREAKDOWN_PARTS) == pytest.approx(10.0)
    assert b.forward / b.backward == pytest.approx(6 / 5)
    b = step_breakdown(parts, 12.5)
    assert b.idle == pytest.approx(1.5) and b.forward == pytest.approx(6.0)


# -- real runs ----------------------------------------------------------------------------------------------


def measure(script: Path, tmp_path: Path, *options: str, script_args: tuple[str, ...] = ()):
    out = tmp_path / f"{script.stem}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DEEPDIVE_HUB", None)
    proc = subprocess.run([sys.executable, "-m", "deepdive.diagnose.measure", str(script), *options,
                           "--out", str(out), "--", *script_args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return read_report(out)


def assert_parts_sum_to_the_step(report) -> None:
    total = sum(getattr(report.breakdown, part) for part in BREAKDOWN_PARTS)
    assert total == pytest.approx(report.step_ms, rel=1e-9)
    assert all(getattr(report.breakdown, part) >= 0 for part in BREAKDOWN_PARTS)


def test_a_per_element_item_loop_is_promoted_at_its_line_with_its_share(tmp_path: Path):
    report = measure(FIXTURES / "item_loop.py", tmp_path, "--steps", "4", "--warmup", "2",
                     script_args=("--steps", "50"))
    assert report.steps == 4 and report.note is None
    assert_parts_sum_to_the_step(report)
    item = next(f for f in report.findings if f.code == "DD110")
    assert item.line == 26 and item.promoted
    assert item.part == "host_sync" and item.share >= PROMOTE_FLOOR
    assert "aten::item ×1024" in item.evidence
    assert report.breakdown.host_sync > 0
    assert any(h.line == 26 and h.part == "host_sync" for h in report.hotspots)


def test_a_loader_without_workers_doing_real_work_per_item_is_promoted_at_its_construction(tmp_path: Path):
    report = measure(FIXTURES / "loader_no_workers.py", tmp_path, "--steps", "3", "--warmup", "1",
                     script_args=("--epochs", "1"))
    assert report.steps == 3
    assert_parts_sum_to_the_step(report)
    loader = next(f for f in report.findings if f.code == "DD101")
    assert loader.line == 35 and loader.promoted and loader.fixable
    assert loader.part == "data_wait" and loader.share >= PROMOTE_FLOOR
    assert "on line 37" in loader.evidence  # measured on the `for` that iterates it
    assert report.breakdown.data_wait == max(getattr(report.breakdown, p) for p in BREAKDOWN_PARTS)


def test_a_script_that_ends_before_the_steps_asked_for_still_gets_a_report_with_a_note(tmp_path: Path):
    report = measure(FIXTURES / "item_loop.py", tmp_path, "--steps", "10", "--warmup", "1",
                     script_args=("--steps", "3"))
    assert report.steps == 2
    assert report.note is not None and "2 of the 10 steps" in report.note
    assert_parts_sum_to_the_step(report)
    assert any(f.code == "DD110" for f in report.findings)


def test_a_script_with_no_optimizer_step_gets_a_report_that_says_nothing_was_measured(tmp_path: Path):
    script = tmp_path / "no_step.py"
    script.write_text("import torch\nprint(torch.ones(3).sum().item())\n")
    report = measure(script, tmp_path, "--steps", "2", "--warmup", "0")
    assert report.steps == 0 and report.step_ms == 0.0
    assert report.note is not None and "without an optimizer step" in report.note


def test_digits_gives_a_report(tmp_path: Path):
    report = measure(REPO / "server" / "examples" / "digits.py", tmp_path, "--steps", "3", "--warmup", "2",
                     script_args=("--epochs", "1"))
    assert report.steps == 3 and report.engine
    assert_parts_sum_to_the_step(report)
    assert report.breakdown.optimizer > 0 and report.breakdown.backward > 0
    assert report.hotspots and all(Path(h.file).name == "digits.py" for h in report.hotspots)
    written = json.loads((tmp_path / "digits.json").read_text())
    assert written["script"] == str(REPO / "server" / "examples" / "digits.py")


def test_a_hot_sync_line_no_rule_explains_is_a_dd900_but_forward_time_and_explained_lines_are_not():
    from deepdive.diagnose.measure.analysis import findings
    from deepdive.diagnose.measure.breakdown import Breakdown, LineTally

    source = ("import torch\n"
              "for x in data:\n"
              "    y = model(x)\n"                          # 3: forward, 50 %: normal, never a DD900
              "    z = y.nonzero()\n"                       # 4: a sync no rule names, 30 %
              "    for v in y:\n"
              "        worst = max(worst, v.item())\n"      # 6: DD110's line, 20 %: explained
              "    y.sum().backward()\n"
              "    opt.step()\n")
    path = "/w/train.py"

    def tally(ns: int, op: str) -> LineTally:
        t = LineTally(ns=2 * ns)
        t.ops[op] = 2 * ns
        t.calls[op] = {1, 2}
        t.per_step[0] = t.per_step[1] = ns
        return t

    bd = Breakdown(steps_ns=[1000, 1000], parts_ns=[{}, {}],
                   lines={(path, 3, "forward"): tally(500, "aten::addmm"),
                          (path, 4, "host_sync"): tally(300, "aten::nonzero"),
                          (path, 6, "host_sync"): tally(200, "aten::item")})
    found = findings(path, source, bd)
    dd900 = [f for f in found if f.code == "DD900"]
    assert [(f.line, f.part, f.share) for f in dd900] == [(4, "host_sync", 0.3)]
    assert dd900[0].promoted and "30 % of step time in aten::nonzero ×1" in dd900[0].message
    item = next(f for f in found if f.code == "DD110")
    assert item.promoted and item.share == pytest.approx(0.2)
    assert found[0].code == "DD900"  # promoted findings first, the largest share first
