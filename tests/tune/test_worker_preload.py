"""A warm worker imports what the study's script imports from installed packages before its first trial
(the start-up a study pays once), and leaves the script's own modules to the trial."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from deepdive.tune.worker import installed_imports


def test_the_scripts_installed_imports_are_found_anywhere_in_it_and_its_own_modules_are_not(tmp_path: Path):
    script = tmp_path / "train.py"
    (tmp_path / "mydata.py").write_text("raise SystemExit('user code must not run at preload')\n")
    script.write_text(textwrap.dedent("""
        import json, torch.optim
        from torch.utils.data import DataLoader
        import mydata
        from . import sibling

        def load():
            from sklearn.datasets import load_digits  # inside a function: still what a trial will import
            return load_digits()
        """))
    found = installed_imports(str(script))
    assert found[:3] == ["json", "torch.optim", "torch.utils.data"]
    assert "mydata" not in found and "sibling" not in found
    assert ("sklearn.datasets" in found) == (subprocess.run([sys.executable, "-c", "import sklearn"]).returncode == 0)
    assert installed_imports(str(tmp_path / "missing.py")) == []
    (tmp_path / "broken.py").write_text("def (:\n")
    assert installed_imports(str(tmp_path / "broken.py")) == []


def test_preload_imports_them_in_the_worker_and_survives_one_that_fails(tmp_path: Path):
    script = tmp_path / "train.py"
    script.write_text("import json\nimport email.mime.text\nimport xml.nope_not_a_module\n")
    code = ("import sys; from deepdive.tune.worker import preload; preload(sys.argv[1]); "
            "print('email.mime.text' in sys.modules, 'xml.nope_not_a_module' in sys.modules)")
    out = subprocess.run([sys.executable, "-P", "-c", code, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
