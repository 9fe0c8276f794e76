"""apply_best: only the default literals change, positions in UTF-16, atomic file write."""

import subprocess
import sys
from pathlib import Path

import pytest

from deepdive.tune.apply import apply_best, apply_to_file, find_suggest_names

ROOT = Path(__file__).resolve().parents[2]

SOURCE = (
    "import deepdive.engine as dd  # 日本語 comment\r\n"
    "run = dd.setup()\r\n"
    "lr = run.suggest('lr', 1e-4, 1e-1, log=True, default=3e-3)  # keep me\r\n"
    "名 = 1; h = run.suggest(\"hidden\", 16, 512,\r\n"
    "                       default=256)\r\n"
    "act = run.suggest('act', choices=['relu', 'gelu'], default='relu')\r\n"
    "again = run.suggest('lr', 1e-4, 1e-1, log=True, default=3e-3)\r\n"
)


def _apply_edits(source: str, edits) -> str:
    # apply LSP edits (UTF-16 columns) from last to first, as an editor does
    lines = source.split("\r\n")
    for e in sorted(edits, key=lambda e: (e.start_line, e.start_character), reverse=True):
        assert e.start_line == e.end_line
        line = lines[e.start_line].encode("utf-16-le")
        new = line[:2 * e.start_character] + e.new_text.encode("utf-16-le") + line[2 * e.end_character:]
        lines[e.start_line] = new.decode("utf-16-le")
    return "\r\n".join(lines)


def test_only_the_defaults_change_and_edits_match():
    params = {"lr": 0.0123, "hidden": 256, "act": "gelu", "dropout": 0.1}
    new, edits, changed, unchanged, missing = apply_best(SOURCE, params)
    assert changed == ["lr", "act"] and unchanged == ["hidden"] and missing == ["dropout"]
    expected = SOURCE.replace("default=3e-3", "default=0.0123").replace("default='relu'", "default='gelu'")
    assert new == expected
    assert _apply_edits(SOURCE, edits) == new
    assert len(edits) == 3
    # UTF-16 columns: the non-ASCII name before a call on line 3 shifts nothing wrongly
    new2, edits2, *_ = apply_best(SOURCE, {"hidden": 64})
    assert new2 == SOURCE.replace("default=256", "default=64")
    assert (edits2[0].start_line, edits2[0].start_character) == (4, len("                       default="))
    assert find_suggest_names(SOURCE) == ["lr", "hidden", "act"]


def test_astral_characters_count_two_utf16_units():
    source = "x = '😀'; y = run.suggest('y', 0, 9, default=1)\n"
    new, edits, *_ = apply_best(source, {"y": 5})
    assert new == source.replace("default=1", "default=5")
    assert edits[0].start_character == len("x = '😀'; y = run.suggest('y', 0, 9, default=") + 1


def test_apply_to_digits_keeps_the_script_running(tmp_path):
    script = tmp_path / "digits.py"
    original = (ROOT / "server/examples/digits.py").read_bytes()
    script.write_bytes(original)
    script.chmod(0o750)
    best = {"lr": 0.0071, "weight_decay": 0.0005, "hidden": 64, "dropout": 0.125}
    outcome = apply_to_file(script, best)
    assert outcome["changed"] == ["lr", "weight_decay", "hidden", "dropout"] and not outcome["missing"]
    text = script.read_text()
    for name, value in best.items():
        assert f'run.suggest("{name}"' in text and f"default={value!r})" in text
    # byte-identical elsewhere: the same file once the new literals are put back
    back, *_ = apply_best(text, {"lr": 3e-3, "weight_decay": 1e-2, "hidden": 256, "dropout": 0.0})
    assert back.replace("0.003", "3e-3").replace("0.01,", "1e-2,").replace("default=0.01)", "default=1e-2)") \
        == original.decode()
    assert script.stat().st_mode & 0o777 == 0o750
    assert not list(tmp_path.glob(".digits.py.*"))  # no temp file left
    run = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "smoke ok" in run.stdout, run.stderr


def test_bad_input():
    with pytest.raises(SyntaxError):
        apply_best("def (:\n", {"x": 1})
    with pytest.raises(ValueError):
        apply_best("run.suggest('x', 0, 1, default=0)\n", {"x": object()})
