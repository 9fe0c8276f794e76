"""The rule catalogue (server/diagnose/rules.md): generated from the rules, committed, and complete."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.diagnose.rules import RULES
from deepdive.diagnose.rules.doc import rules_markdown

PAGE = Path(__file__).resolve().parents[2] / "server" / "diagnose" / "rules.md"
REGENERATE = "python -m deepdive.diagnose.rules --write server/diagnose/rules.md"


def test_committed_page_matches_the_rules() -> None:
    assert PAGE.is_file(), f"server/diagnose/rules.md is missing: run `{REGENERATE}`"
    assert PAGE.read_text(encoding="utf-8") == rules_markdown(), \
        f"server/diagnose/rules.md is out of date with the rules: run `{REGENERATE}`"


def test_every_rule_has_an_anchor_its_heading_and_its_description() -> None:
    page = rules_markdown()
    for code, rule in RULES.items():
        # the editor links a diagnostic to rules.md#dd110 (contract with the daemon)
        assert f'<a id="{code.lower()}"></a>\n\n## {code} {rule.name}\n' in page
        assert (rule.check.__doc__ or "").strip().splitlines()[0].strip() in page
    assert "# deepdive: ignore[DD" in page and "deepdive.diagnostics.disabledRules" in page and "--disable" in page


@pytest.mark.parametrize("code", sorted(RULES))
def test_rule_explains_why_and_how_to_fix(code: str) -> None:
    doc = RULES[code].check.__doc__ or ""
    lines = [line.strip() for line in doc.strip().splitlines()]
    assert lines and lines[0], f"{code}: the docstring starts with a summary line"
    assert any(line.startswith("Why:") for line in lines), f"{code}: the docstring has a 'Why:' paragraph"
    assert any(line.startswith("Fix:") for line in lines), f"{code}: the docstring has a 'Fix:' paragraph"
    after_fix = doc[doc.index("Fix:"):]
    assert "```" in after_fix or "before" in after_fix.lower(), f"{code}: 'Fix:' shows a before/after example"


def test_codes_are_unique_well_formed_and_enough_are_fixable() -> None:
    codes = sorted(RULES)
    assert all(re.fullmatch(r"DD\d{3}", code) for code in codes), codes
    assert all(RULES[code].code == code for code in codes)
    names = [rule.name for rule in RULES.values()]
    assert len(set(names)) == len(names), "rule names are unique"
    assert len(codes) >= 20, f"issue #22 asks for at least 20 rules, {len(codes)} registered"
    fixable = sum(rule.fixable for rule in RULES.values())
    assert fixable / len(codes) >= 0.6, f"{fixable} of {len(codes)} rules have a quick fix; at least 60 % should"


def test_command_prints_and_writes_the_page(tmp_path: Path) -> None:
    printed = subprocess.run([sys.executable, "-m", "deepdive.diagnose.rules"], capture_output=True, text=True,
                             check=True)
    assert printed.stdout == rules_markdown()
    target = tmp_path / "rules.md"
    subprocess.run([sys.executable, "-m", "deepdive.diagnose.rules", "--write", str(target)], check=True,
                   capture_output=True)
    assert target.read_text(encoding="utf-8") == rules_markdown()
    bad = subprocess.run([sys.executable, "-m", "deepdive.diagnose.rules", "--write", str(tmp_path / "no" / "x.md")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "does not exist" in bad.stderr
