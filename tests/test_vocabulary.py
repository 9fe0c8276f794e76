"""Every list a user picks from is written once, in deepdive.vocabulary, and everything else reads it.

A newcomer adding a quantization mode or a sampler edits server/vocabulary.py and the code that
implements it: the command line's choices, the job kinds' checks, the engine and the extension's lists
(generated into extension/src/protocol.ts) follow. These tests find a vocabulary written out anywhere
else in the source (a copied tuple or array literal), in any order.
"""

from __future__ import annotations

import ast
import json
import re
import typing
from pathlib import Path

import attrs
import pytest

from deepdive import vocabulary
from deepdive.vocabulary import VOCABULARIES

REPO = Path(__file__).resolve().parents[1]
GENERATED = {REPO / "extension" / "src" / "protocol.ts"}
EXEMPT = {
    # Example training scripts: they show what a user's own script writes (its own argparse choices).
    REPO / "server" / "examples": set(VOCABULARIES),
    # A typing.Literal cannot name a tuple: codegen's Framework type spells the frameworks out.
    REPO / "server" / "codegen": {"frameworks"},
}
_BY_SET = {frozenset(values): name for name, values in VOCABULARIES.items()}
_TS_ARRAY = re.compile(r"\[((?:\s*(?:'[^'\n]*'|\"[^\"\n]*\")\s*,?)+)\]")
_TS_STRING = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")


def _vocabulary_of(values: list[str]) -> str | None:
    """The vocabulary these strings are a copy of (the same values, any order), or None."""
    if len(values) < 2 or len(set(values)) != len(values):
        return None
    return _BY_SET.get(frozenset(values))


def _exempt(path: Path, name: str) -> bool:
    return any(path.is_relative_to(folder) and name in names for folder, names in EXEMPT.items())


def _python_copies(path: Path, root: Path = REPO) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            name = _vocabulary_of([e.value for e in node.elts])  # type: ignore[attr-defined]
            if name and not _exempt(path, name):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    return found


def _typescript_copies(path: Path, root: Path = REPO) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _TS_ARRAY.finditer(text):
        values = [a or b for a, b in _TS_STRING.findall(match.group(1))]
        name = _vocabulary_of(values)
        if name:
            found.append(f"{path.relative_to(root)}:{text.count(chr(10), 0, match.start()) + 1}: {name}")
    return found


def test_no_python_module_writes_a_vocabulary_out():
    modules = [p for p in (REPO / "server").rglob("*.py") if p != REPO / "server" / "vocabulary.py"]
    copies = [hit for path in sorted(modules) for hit in _python_copies(path)]
    assert copies == [], "import these lists from deepdive.vocabulary instead of writing them out:\n" + "\n".join(copies)


def test_no_typescript_file_writes_a_vocabulary_out():
    files = [p for folder in ("extension/src", "extension/webview") for p in (REPO / folder).rglob("*.ts")]
    copies = [hit for path in sorted(files) if path not in GENERATED for hit in _typescript_copies(path)]
    assert copies == [], "use Vocabularies from extension/src/protocol.ts instead of writing these out:\n" + "\n".join(
        copies)


def test_the_scan_finds_a_copy_in_any_order(tmp_path: Path):
    """The two scans above pass because there is nothing to find, not because they cannot find it."""
    py = tmp_path / "copy.py"
    py.write_text('MODES = ("int4-weight", "int8", "int8-dynamic", "int8-static", "int8-weight")\n')
    ts = tmp_path / "copy.ts"
    ts.write_text("const samplers = ['tpe',\n    'gp', 'random', \"cmaes\"] as const;\nconst two = ['x86'];\n")
    assert _python_copies(py, tmp_path) == ["copy.py:1: quantizeModes"]
    assert _typescript_copies(ts, tmp_path) == ["copy.ts:1: tuneSamplers"]


def test_every_vocabulary_is_in_the_registry_once():
    constants = {name: value for name, value in vars(vocabulary).items() if name.isupper() and isinstance(value, tuple)}
    assert sorted(map(id, constants.values())) == sorted(map(id, VOCABULARIES.values()))
    assert len(_BY_SET) == len(VOCABULARIES), "two vocabularies hold the same values"


@pytest.mark.parametrize("setting, values", [
    ("deepdive.codegen.backend", VOCABULARIES["codegenBackends"]),
    ("deepdive.codegen.framework", ("auto", *VOCABULARIES["frameworks"])),
])
def test_the_manifests_settings_offer_the_vocabulary(setting: str, values: tuple[str, ...]):
    """package.json cannot import: its enums are checked against the definition instead."""
    manifest = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    assert tuple(manifest["contributes"]["configuration"]["properties"][setting]["enum"]) == values


def test_the_engine_the_cli_and_the_job_kinds_read_the_vocabulary():
    from deepdive.cli import build_parser
    from deepdive.engine.compress.pipeline import QUANTIZE_MODES
    from deepdive.engine.compress.prune import IMPORTANCES
    from deepdive.engine.compress.quantize import MODES, TARGETS
    from deepdive.engine.precision import PRECISIONS
    from deepdive.engine.run import COMPRESSIONS
    from deepdive.protocol import JOB_OPTIONS

    assert MODES is QUANTIZE_MODES is vocabulary.QUANTIZE_MODES and TARGETS is vocabulary.COMPRESS_TARGETS
    assert IMPORTANCES is vocabulary.PRUNE_IMPORTANCES and PRECISIONS is vocabulary.TRAIN_PRECISIONS
    assert COMPRESSIONS is vocabulary.GRAD_COMPRESSIONS
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    choices = {(cmd, a.dest): tuple(a.choices) for cmd, p in sub.choices.items() for a in p._actions if a.choices}
    assert choices[("compress", "quantize")] == vocabulary.QUANTIZE_MODES
    assert choices[("tune", "sampler")] == vocabulary.TUNE_SAMPLERS
    assert choices[("generate", "backend")] == vocabulary.CODEGEN_BACKENDS
    sampler = attrs.fields_dict(JOB_OPTIONS["tune"])["sampler"].type  # Optional[TuneSampler]
    assert typing.get_args(typing.get_args(sampler)[0]) == vocabulary.TUNE_SAMPLERS

