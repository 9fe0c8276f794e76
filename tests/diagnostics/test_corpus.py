"""The static rules on the diagnostics corpus: every planted problem found at its line, nothing else found.

Each slow script in tests/diagnostics/corpus/slow/ plants one problem, its line marked ``# planted: DDnnn``; the
rules must report that code on that line and nothing anywhere else in the file (anything else is a false
positive). The clean scripts in corpus/clean/ are idiomatic training code: no finding at all. Each script must
also run as it is (``python script.py`` on this CPU, a few seconds), so the measured diagnosis and *Apply and
measure* have something real to time; that part spawns torch and is marked slow.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import Counter

import pytest

from deepdive.diagnose.rules import RULES, analyze, apply_edits
from tests.diagnostics.corpus.planted import Script, planted_markers, scripts

SLOW = scripts("slow")
CLEAN = scripts("clean")
RUN_TIMEOUT_S = 60


def _describe(findings: set[tuple[int, str]]) -> str:
    return ", ".join(f"{code} at line {line}" for line, code in sorted(findings)) or "none"


def test_the_corpus_has_the_scripts_the_issue_asks_for() -> None:
    assert len(SLOW) >= 30, f"{len(SLOW)} slow scripts: the corpus needs at least 30"
    assert len(CLEAN) >= 10, f"{len(CLEAN)} clean scripts: the corpus needs at least 10"
    unmarked = [s.name for s in SLOW if not s.planted]
    assert not unmarked, f"slow scripts without a '# planted: DDnnn' marker: {unmarked}"
    marked = [s.name for s in CLEAN if s.planted]
    assert not marked, f"clean scripts must not plant anything: {marked}"


def test_every_rule_is_planted_somewhere_and_every_marker_names_a_rule() -> None:
    planted = {code for s in SLOW for _, code in s.planted}
    assert not planted - set(RULES), f"markers name codes no rule has: {sorted(planted - set(RULES))}"
    assert not set(RULES) - planted, f"rules with no slow script planting them: {sorted(set(RULES) - planted)}"


def test_a_malformed_marker_is_refused_with_the_line_and_the_expected_form() -> None:
    assert planted_markers("x = 1  # planted: DD110, DD111\n") == {(1, "DD110"), (1, "DD111")}
    with pytest.raises(ValueError, match=r"<string>:2: a planted marker must name rule codes, e.g. '# planted: DD110'"):
        planted_markers("x = 1\ny = 2  # planted: item\n")


@pytest.mark.parametrize("script", SLOW, ids=lambda s: s.path.stem)
def test_the_planted_problem_is_found_at_its_line_and_nothing_else(script: Script) -> None:
    got = {(f.line, f.code) for f in analyze(script.source, str(script.path))}
    missing, extra = script.planted - got, got - script.planted
    assert not missing and not extra, (
        f"{script.name}: planted {_describe(set(script.planted))}; missing {_describe(missing)}; "
        f"false positives {_describe(extra)}")


@pytest.mark.parametrize("script", CLEAN, ids=lambda s: s.path.stem)
def test_a_clean_script_has_no_finding(script: Script) -> None:
    got = {(f.line, f.code) for f in analyze(script.source, str(script.path))}
    assert not got, f"{script.name}: false positives {_describe(got)}"


FIXABLE = [(s, line, code) for s in SLOW for line, code in sorted(s.planted) if RULES.get(code) and RULES[code].fixable]


@pytest.mark.parametrize("script,line,code", FIXABLE, ids=[f"{s.path.stem}" for s, _, _ in FIXABLE])
def test_the_fix_of_a_planted_problem_parses_and_removes_it(script: Script, line: int, code: str) -> None:
    source = script.source
    findings = analyze(source, str(script.path))
    at_line = [f for f in findings if f.line == line and f.code == code]
    assert at_line, f"{script.name}: {code} not found at line {line}"
    fix = at_line[0].fix
    assert fix is not None and fix.edits, f"{script.name}: {code} is fixable but its finding at line {line} has no fix"
    fixed = apply_edits(source, fix.edits)
    ast.parse(fixed, filename=f"{script.name} (fixed)")
    before = Counter(f.code for f in findings)[code]
    after = Counter(f.code for f in analyze(fixed, str(script.path)))[code]
    assert after == before - 1, f"{script.name}: after '{fix.title}' {code} is still reported {after} time(s)"


def _run_param(script: Script) -> object:
    marks = [pytest.mark.slow]
    if script.needs_cuda:
        marks.append(pytest.mark.cuda)
    return pytest.param(script, marks=marks, id=script.name.replace("/", "-").removesuffix(".py"))


@pytest.mark.parametrize("script", [_run_param(s) for s in SLOW + CLEAN])
def test_the_script_runs_as_it_is(script: Script, tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, str(script.path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    tail = (result.stdout + result.stderr)[-1500:]
    if script.not_runnable is not None:
        assert result.returncode != 0, f"{script.name} is marked not-runnable ({script.not_runnable}) but exited 0"
        return
    assert result.returncode == 0, f"{script.name} exited {result.returncode}:\n{tail}"
    assert not list(tmp_path.iterdir()), f"{script.name} wrote files in its working directory"
