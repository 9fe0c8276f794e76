"""The README's *Limits* section says exactly which kinds have a default time limit, and what it is.

A default wall-clock limit that kills a multi-day training run would be a nasty surprise, so only the
deep check has one; the user sets one for any job (``timeoutS``, ``deepdive train --timeout``). This
test ties the README's sentence to the kinds' real defaults, so neither can change without the other.
"""

from __future__ import annotations

import re
from pathlib import Path

from deepdive.jobs.kinds import KINDS, Context, build_launch

README = Path(__file__).resolve().parents[2] / "README.md"


def default_limits(ws: Path) -> dict[str, float | None]:
    (ws / "train.py").write_text("print('hi')\n")
    (ws / "model.pt").write_bytes(b"x")
    minimal = {"doctor-deep": {}, "script": {"path": "train.py"}, "train": {"path": "train.py"},
               "tune": {"path": "train.py"}, "compress": {"model": "model.pt", "eval": "train.py", "quantize": "int8"},
               "diagnose": {"path": "train.py"}, "diagnose-fix": {"path": "train.py", "code": "DD101", "line": 1},
               "deploy-export": {"path": "train.py"}, "deploy-bench": {"folder": "export"},
               "deploy-serve": {"folder": "export"}}
    (ws / "export").mkdir()
    (ws / "export" / "deploy.json").write_text("{}")
    assert set(minimal) == set(KINDS), "a new kind: add its minimal options here and its limit to the README"
    ctx = Context(python="/py", workspace=str(ws), trusted=True)
    return {kind: build_launch(kind, options, ctx)[1].timeout_s for kind, options in minimal.items()}


def limits_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("### Limits", 1)[1].split("\n#", 1)[0]


def test_the_readme_names_exactly_the_kinds_without_a_default_time_limit(tmp_path: Path):
    limits = default_limits(tmp_path)
    section = limits_section()
    assert "Every job runs with a wall-clock limit" not in " ".join(section.split())
    sentence = re.search(r"((?:`[\w-]+`(?:,\s+|\s+and\s+)?)+)\s+(?:jobs\s+)?have\s+no\s+default\s+time\s+limit",
                         section)
    assert sentence, "the Limits section lists the kinds that have no default time limit"
    assert set(re.findall(r"`([\w-]+)`", sentence.group(1))) == {k for k, t in limits.items() if t is None}
    for kind, seconds in limits.items():
        if seconds is not None:
            assert f"`{kind}`" in section and f"{seconds:g} s" in section, f"the README gives {kind}'s default"
    assert "`timeoutS`" in section and "`deepdive train --timeout" in " ".join(section.split()), "and how to set one"
