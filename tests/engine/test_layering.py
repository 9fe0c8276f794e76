"""deepdive.engine is the library a user's script imports: it depends on torch and on nothing of the
daemon's or the LSP layer's. It may use the neutral modules below, which import only the standard
library and each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"
NEUTRAL = {"vocabulary", "fsutil", "netutil", "cpuinfo", "throughput"}
DAEMON_SIDE = ("deepdive.protocol", "deepdive.daemon", "deepdive.telemetry", "deepdive.jobs", "deepdive.hostinfo",
               "deepdive.codegen", "deepdive.tune", "deepdive.cli", "pygls", "lsprotocol", "websockets")


def _deepdive_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module under deepdive) for every absolute import of a deepdive module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("deepdive.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "deepdive":
                found += [(node.lineno, f"deepdive.{a.name}") for a in node.names]
            elif node.module.startswith("deepdive."):
                found.append((node.lineno, node.module))
    return found


def _top(module: str) -> str:
    return module.split(".")[1]


def test_the_engine_imports_only_itself_and_the_neutral_modules():
    wrong = [f"{path.relative_to(SERVER)}:{line}: {module}"
             for path in sorted((SERVER / "engine").rglob("*.py"))
             for line, module in _deepdive_imports(path)
             if _top(module) not in NEUTRAL | {"engine"}]
    assert wrong == [], "the engine reaches the daemon side:\n" + "\n".join(wrong)


def test_the_neutral_modules_import_nothing_of_deepdive_but_each_other():
    wrong = [f"{name}.py:{line}: {module}" for name in sorted(NEUTRAL)
             for line, module in _deepdive_imports(SERVER / f"{name}.py") if _top(module) not in NEUTRAL]
    assert wrong == []


def test_the_scan_sees_an_import_of_the_daemon(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import deepdive.protocol\nfrom deepdive.hostinfo import cpu_model\nfrom deepdive import jobs\n"
                      "from . import run\n")
    assert [m for _, m in _deepdive_imports(sample)] == ["deepdive.protocol", "deepdive.hostinfo", "deepdive.jobs"]


def test_importing_the_engine_loads_no_daemon_module():
    """At run time too: every engine module imported, then the loaded modules looked at."""
    modules = sorted("deepdive.engine." + ".".join(p.relative_to(SERVER / "engine").with_suffix("").parts)
                     for p in (SERVER / "engine").rglob("*.py") if p.name != "__init__.py")
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({DAEMON_SIDE!r}))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
