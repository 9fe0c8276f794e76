"""The serving image's Dockerfile and the dev container cannot rot silently: what they install, copy and run
exists in this repository (the extras, the paths, the CLI's options, the health route), and the image's
build context (the files the Dockerfile copies) builds a wheel that holds the serving command.

No container is built here (this machine cannot pull the base image); see the README's Deployment section."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _one(keyword: str) -> str:
    found = [rest for k, rest in _instructions() if k == keyword]
    assert len(found) == 1, f"the Dockerfile has {len(found)} {keyword} instructions"
    return found[0]


def _args() -> dict[str, str]:
    return dict(re.match(r'(\w+)=?"?([^"]*)"?', rest).groups() for k, rest in _instructions() if k == "ARG")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.removeprefix("**/")) or path.startswith(p + "/")
               for p in patterns)


def test_the_image_installs_extras_that_exist_and_copies_paths_that_exist():
    extras = _pyproject()["project"]["optional-dependencies"]
    installs = [rest for k, rest in _instructions() if k == "RUN" and "pip install" in rest]
    named = re.findall(r'"\.\[([\w,-]+)\]"', " ".join(installs))
    assert named, "the Dockerfile no longer installs deepdive with extras"
    for group in named:
        for extra in group.split(","):
            assert extra in extras, f"the Dockerfile installs the extra {extra!r}, which pyproject.toml lacks"
    assert "deploy" in ",".join(named) and "engine" in ",".join(named)
    # the CPU torch the image installs is the one `make setup` installs
    make_torch = re.search(r"^TORCH_SPEC \?= (\S+)", (REPO / "Makefile").read_text(), re.M)
    assert make_torch and _args()["TORCH_SPEC"] == make_torch.group(1)
    copied = []
    for keyword, rest in _instructions():
        if keyword == "COPY":
            *sources, _dest = shlex.split(rest)
            copied += sources
    for source in copied:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
        assert not _dockerignored(source), f".dockerignore excludes {source}, which the Dockerfile copies"
    readme = _pyproject()["project"]["readme"]
    assert readme in copied, f"pyproject.toml's readme {readme} must be in the build context"


def test_the_entrypoint_is_a_deploy_serve_command_line_and_the_healthcheck_probes_an_open_route():
    from deepdive.cli import build_parser
    from deepdive.deploy.app import OPEN_PATHS

    argv = json.loads(_one("ENTRYPOINT")) + json.loads(_one("CMD"))
    assert argv[0] in _pyproject()["project"]["scripts"], f"{argv[0]} is not a console script of the package"
    args = build_parser().parse_args(argv[1:])  # an option serve lost or renamed fails here (argparse exits 2)
    assert (args.command, args.deploy_command) == ("deploy", "serve")
    assert args.host == "0.0.0.0"
    port = int(_one("EXPOSE"))
    assert args.port == port
    health = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", _one("HEALTHCHECK"))
    assert health, "the HEALTHCHECK no longer probes the server over HTTP"
    assert int(health.group(1)) == port
    assert health.group(2) == "/v2/health/ready" and health.group(2) in OPEN_PATHS  # answered without the token
    user = _one("USER")
    assert user not in ("root", "0")


def test_the_build_context_builds_a_wheel_holding_the_serving_command(tmp_path):
    """What the Dockerfile copies, built as its `pip install .` builds it: the wheel must hold deploy's modules."""
    pytest.importorskip("setuptools", reason="setuptools is missing from the virtualenv: cannot build the wheel here")
    context = tmp_path / "context"
    context.mkdir()
    for keyword, rest in _instructions():
        if keyword == "COPY":
            *sources, _dest = shlex.split(rest)
            for source in sources:
                src = REPO / source
                if src.is_dir():
                    shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))
                else:
                    shutil.copy2(src, context / source)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "wheel"), str(context)], capture_output=True, text=True, timeout=240,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_NO_INDEX": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("deepdive-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"deepdive/deploy/{p.name}" for p in (REPO / "server" / "deploy").glob("*.py")}
    wanted |= {f"deepdive/{p.name}" for p in (REPO / "server").glob("cli_deploy*.py")}
    assert "deepdive/cli_deploy_serve.py" in wanted and "deepdive/deploy/app.py" in wanted
    assert not wanted - names, f"the image would lack {sorted(wanted - names)}: list the package in pyproject.toml"


def test_the_dev_container_runs_the_repositorys_setup_and_forwards_the_servers_port():
    config = json.loads((REPO / ".devcontainer" / "devcontainer.json").read_text())
    target = re.fullmatch(r"make (\w[\w-]*)", config["postCreateCommand"])
    assert target, "the dev container's postCreateCommand is no longer a make target"
    assert re.search(rf"^{target.group(1)}:", (REPO / "Makefile").read_text(), re.M), \
        f"the Makefile has no {target.group(1)} target"
    assert int(_one("EXPOSE")) in config["forwardPorts"]
    assert config["image"].split(":")[-1].split("-")[1].startswith(_args()["PYTHON_VERSION"])


def test_the_healthcheck_command_passes_against_a_served_model_and_fails_when_it_is_gone(digits_export, tmp_path):
    """The HEALTHCHECK's own command line, run against `deepdive deploy serve` (on a free port instead of 8000)."""
    import os
    import signal
    import time

    check = json.loads(re.sub(r"^(--\S+\s+)*", "", _one("HEALTHCHECK")).removeprefix("CMD").strip())
    server = subprocess.Popen([sys.executable, "-m", "deepdive", "deploy", "serve", str(digits_export), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                              env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line, f"deploy serve exited with {server.wait()} before serving"
            found = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
            url = found and found.group(1)
        assert url, "deploy serve did not say where it serves"
        probe = [part.replace("127.0.0.1:8000", f"127.0.0.1:{url}") for part in check]
        if probe[0] == "python":  # the image's python; here this virtualenv's (the probe uses the standard library only)
            probe[0] = sys.executable
        deadline = time.monotonic() + 60
        while (code := subprocess.run(probe, capture_output=True, timeout=30).returncode) != 0:
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed against a ready server"
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert code == 0
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0  # nothing listens any more
