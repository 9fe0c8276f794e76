"""analyze() as a whole: one rule's bug does not hide the others' findings."""

from __future__ import annotations

import logging

import pytest

from deepdive.diagnose.rules import RULES, analyze
from deepdive.diagnose.rules.base import rule

SLOW = """\
import torch
from torch.utils.data import DataLoader

loader = DataLoader(dataset, batch_size=32, num_workers=0)
for x, y in loader:
    loss = model(x).sum()
    loss.backward()
    opt.step()
    print(loss.item())
"""


@pytest.fixture
def broken_rule():
    @rule("DD998", "broken", "a rule with a bug", category="idle", fixable=False)
    def check(ctx):
        raise KeyError("a bug in a rule")

    yield
    del RULES["DD998"]


def test_a_rule_that_raises_is_logged_and_the_other_rules_still_report(broken_rule, caplog):
    before = {f.code for f in analyze(SLOW)}
    assert "DD101" in before and "DD110" in before
    with caplog.at_level(logging.ERROR, logger="deepdive.diagnose"):
        after = analyze(SLOW, "slow.py")
    assert {f.code for f in after} == before
    assert any("rule DD998 failed on slow.py" in r.getMessage() for r in caplog.records)


def test_a_file_that_does_not_parse_has_no_findings():
    assert analyze("for x in loader:\n    x.item(\n") == []


def test_analysed_files_are_freed_when_the_analysis_returns():
    """Nothing a rule computes per file outlives the analysis: a cache keyed by the Context kept every tree of every
    save alive in the daemon's worker (megabytes per save of a long file)."""
    import gc
    import weakref

    from deepdive.diagnose.rules import base

    seen: list[weakref.ref] = []
    original = base.Context.__init__

    def tracked(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(weakref.ref(self.tree))

    base.Context.__init__ = tracked
    try:
        for _ in range(3):
            analyze(SLOW + "\ndef evaluate(model, loader):\n    for x, y in loader:\n        model(x)\n")
    finally:
        base.Context.__init__ = original
    gc.collect()
    assert len(seen) == 3 and all(ref() is None for ref in seen)
