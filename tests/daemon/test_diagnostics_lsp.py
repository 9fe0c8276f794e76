"""Performance diagnostics over LSP: the real daemon over stdio, driven as the editor drives it.

The file under test is a small training script with two planted problems: a DataLoader without workers
(DD101, which has a mechanical fix) and ``.item()`` on every step (DD110, which has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Union

import pytest
from lsprotocol import types

from deepdive import __version__
from deepdive.diagnose.report import report_path
from deepdive.lspclient import DaemonClient
from deepdive.protocol import (
    JOBS_EVENT, JOBS_START, VERSION, DiagnosisFinding, DiagnosisReport, JobStartParams, StepBreakdown, to_wire,
)

PUBLISH = types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS

TRAIN = """\
import torch
from torch.utils.data import DataLoader, Dataset


class Squares(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        x = torch.randn(4)
        return x, (x ** 2).sum(0, keepdim=True)


model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
loader = DataLoader(Squares(), batch_size=8)
total = 0.0
for x, y in loader:
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    total += loss.item()
"""
LOADER_LINE = 16  # 1-based: the DataLoader without workers
LOOP_LINE = 18
ITEM_LINE = 23


@contextlib.asynccontextmanager
async def editor(workspace: Path, *, trusted: bool = True,
                 diagnostics: Optional[dict[str, Any]] = None) -> AsyncIterator[DaemonClient]:
    """A daemon initialised as vscode-languageclient does it, with the ``diagnostics`` initializationOptions."""
    client = DaemonClient()

    @client.feature(PUBLISH)
    def _published(params: types.PublishDiagnosticsParams) -> None:
        client.notifications[PUBLISH].append(params)

    converter = client.protocol._converter

    def command_or_action(value: Any, _: type) -> Any:
        # lsprotocol reads every action that carries a command as a bare Command; the editor tells them apart the
        # way the LSP specification does: a Command's `command` is a string, a CodeAction's is an object
        kind = types.Command if isinstance(value.get("command"), str) else types.CodeAction
        return converter.structure(value, kind)

    converter.register_structure_hook(Union[types.Command, types.CodeAction], command_or_action)
    await client.start_daemon()
    options: dict[str, Any] = {"trusted": trusted, "clientName": "test-editor"}
    if diagnostics is not None:
        options["diagnostics"] = diagnostics
    root = workspace.resolve()
    client.initialize_result = await client.initialize_async(types.InitializeParams(
        process_id=os.getpid(), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        capabilities=types.ClientCapabilities(), initialization_options=options))
    client.initialized(types.InitializedParams())
    try:
        yield client
    finally:
        await client.close()


def open_file(client: DaemonClient, path: Path, text: str, version: int = 1) -> str:
    path.write_text(text, encoding="utf-8")
    uri = path.resolve().as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))
    return uri


def replace_text(client: DaemonClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


def save(client: DaemonClient, uri: str) -> None:
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))


async def published(client: DaemonClient, uri: str, *, after: int = 0, version: Optional[int] = None,
                    timeout: float = 30.0) -> types.PublishDiagnosticsParams:
    """The first publishDiagnostics for ``uri`` past the ``after``-th one received (of any file)."""
    deadline = time.monotonic() + timeout
    while True:
        for item in client.notifications[PUBLISH][after:]:
            if item.uri == uri and (version is None or item.version == version):
                return item
        if time.monotonic() > deadline:
            got = [(p.version, sorted(codes(p))) for p in client.notifications[PUBLISH] if p.uri == uri]
            raise AssertionError(f"no publishDiagnostics for {uri} (version {version}) within {timeout} s; got {got}")
        await asyncio.sleep(0.01)


def codes(params: types.PublishDiagnosticsParams) -> set[str]:
    return {str(d.code) for d in params.diagnostics}


def by_code(params: types.PublishDiagnosticsParams, code: str) -> types.Diagnostic:
    matches = [d for d in params.diagnostics if d.code == code]
    assert len(matches) == 1, f"expected one {code}, got {params.diagnostics}"
    return matches[0]


def apply_text_edits(text: str, edits: list[types.TextEdit]) -> str:
    """LSP text edits applied to ASCII text (character = column), last first."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for raw in lines:
        starts.append(starts[-1] + len(raw))

    def offset(pos: types.Position) -> int:
        return starts[pos.line] + pos.character if pos.line < len(lines) else len(text)

    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


async def code_actions(client: DaemonClient, uri: str, diag: types.Diagnostic) -> dict[str, types.CodeAction]:
    result = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diag.range,
        context=types.CodeActionContext(diagnostics=[diag])))
    assert result is not None
    return {a.title: a for a in result if isinstance(a, types.CodeAction)}


async def test_open_publishes_the_findings_at_their_lines(workspace: Path):
    async with editor(workspace) as client:
        sync = client.initialize_result.capabilities.text_document_sync
        assert isinstance(sync, types.TextDocumentSyncOptions) and sync.open_close and sync.save
        assert client.initialize_result.capabilities.code_action_provider
        assert client.initialize_result.capabilities.code_lens_provider
        uri = open_file(client, workspace / "train.py", TRAIN)
        first = await published(client, uri, version=1)
        assert {"DD101", "DD110"} <= codes(first)
        loader = by_code(first, "DD101")
        assert loader.source == "deepdive" and loader.severity == types.DiagnosticSeverity.Warning
        assert loader.range.start.line == LOADER_LINE - 1
        assert loader.range.start.character == TRAIN.splitlines()[LOADER_LINE - 1].index("DataLoader(")
        assert loader.code_description is not None and loader.code_description.href.startswith("file://")
        assert loader.code_description.href.endswith("/diagnose/rules.md#dd101")
        item = by_code(first, "DD110")
        assert item.range.start.line == ITEM_LINE - 1 and item.severity == types.DiagnosticSeverity.Warning


async def test_columns_count_utf16_code_units(workspace: Path):
    """LSP positions count UTF-16 code units by default: an emoji before the finding counts twice."""
    text = TRAIN.replace("    total += loss.item()", '    tag = "😀"; total += loss.item()')
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", text)
        item = by_code(await published(client, uri, version=1), "DD110")
        line = text.splitlines()[ITEM_LINE - 1]
        assert item.range.start.character == line.index("loss.item()") + 1
        assert item.range.end.character == line.index("loss.item()") + len("loss.item()") + 1


async def test_save_and_typing_publish_again_and_close_clears(workspace: Path):
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", "import torch\n")
        assert not (await published(client, uri, version=1)).diagnostics
        # typing: the changed text is analysed once typing pauses
        mark = len(client.notifications[PUBLISH])
        replace_text(client, uri, TRAIN, 2)
        assert {"DD101", "DD110"} <= codes(await published(client, uri, after=mark, version=2))
        # saving analyses the text at once
        mark = len(client.notifications[PUBLISH])
        fixed = TRAIN.replace("batch_size=8)", "batch_size=8, num_workers=2)")
        replace_text(client, uri, fixed, 3)
        save(client, uri)
        after_save = await published(client, uri, after=mark, version=3)
        assert "DD101" not in codes(after_save) and "DD110" in codes(after_save)
        mark = len(client.notifications[PUBLISH])
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
        assert not (await published(client, uri, after=mark)).diagnostics


async def test_the_quick_fix_removes_its_finding(workspace: Path):
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", TRAIN)
        diag = by_code(await published(client, uri, version=1), "DD101")
        actions = await code_actions(client, uri, diag)
        fix = next(a for title, a in actions.items() if title.startswith("Fix DD101: "))
        assert fix.kind == types.CodeActionKind.QuickFix and fix.is_preferred
        assert fix.diagnostics and fix.diagnostics[0].code == "DD101"
        assert fix.edit is not None and fix.edit.changes is not None
        fixed = apply_text_edits(TRAIN, fix.edit.changes[uri])
        compile(fixed, "train.py", "exec")
        mark = len(client.notifications[PUBLISH])
        replace_text(client, uri, fixed, 2)
        save(client, uri)
        after = await published(client, uri, after=mark, version=2)
        assert "DD101" not in codes(after) and "DD110" in codes(after)
        # apply and measure, in a trusted workspace: the same edit for the extension to apply and time
        measure = actions["Apply and measure DD101 fix…"]
        assert measure.command is not None and measure.command.command == "deepdive.applyAndMeasureFix"
        argument = measure.command.arguments[0]
        assert argument["uri"] == uri and argument["code"] == "DD101" and argument["line"] == LOADER_LINE
        assert argument["title"] == fix.title.removeprefix("Fix DD101: ")
        assert argument["edit"]["changes"][uri][0]["newText"] == fix.edit.changes[uri][0].new_text


async def test_the_ignore_action_suppresses_the_finding(workspace: Path):
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", TRAIN)
        diag = by_code(await published(client, uri, version=1), "DD110")
        actions = await code_actions(client, uri, diag)
        assert "Apply and measure DD110 fix…" not in actions  # DD110 has no mechanical fix
        ignore = actions["Ignore DD110 on this line"]
        assert ignore.kind == types.CodeActionKind.QuickFix and ignore.edit and ignore.edit.changes
        ignored = apply_text_edits(TRAIN, ignore.edit.changes[uri])
        assert ignored.splitlines()[ITEM_LINE - 1] == "    total += loss.item()  # deepdive: ignore[DD110]"
        mark = len(client.notifications[PUBLISH])
        replace_text(client, uri, ignored, 2)
        save(client, uri)
        after = await published(client, uri, after=mark, version=2)
        assert "DD110" not in codes(after) and "DD101" in codes(after)


async def test_the_ignore_action_adds_the_code_to_an_existing_comment(workspace: Path):
    text = TRAIN.replace("total += loss.item()", "total += loss.item()  # deepdive: ignore[DD999]")
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", text)
        diag = by_code(await published(client, uri, version=1), "DD110")
        ignore = (await code_actions(client, uri, diag))["Ignore DD110 on this line"]
        assert ignore.edit and ignore.edit.changes
        ignored = apply_text_edits(text, ignore.edit.changes[uri])
        assert ignored.splitlines()[ITEM_LINE - 1] == "    total += loss.item()  # deepdive: ignore[DD999, DD110]"
        mark = len(client.notifications[PUBLISH])
        replace_text(client, uri, ignored, 2)
        save(client, uri)
        assert "DD110" not in codes(await published(client, uri, after=mark, version=2))


async def test_an_ignore_comment_in_the_file_is_honoured(workspace: Path):
    text = TRAIN.replace("batch_size=8)", "batch_size=8)  # deepdive: ignore[DD101]")
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", text)
        first = await published(client, uri, version=1)
        assert "DD101" not in codes(first) and "DD110" in codes(first)


async def test_disabled_rules_from_initialization_options(workspace: Path):
    async with editor(workspace, diagnostics={"enabled": True, "disabledRules": ["dd110"]}) as client:
        uri = open_file(client, workspace / "train.py", TRAIN)
        first = await published(client, uri, version=1)
        assert "DD110" not in codes(first) and "DD101" in codes(first)


async def test_settings_changes_republish_and_disabled_clears(workspace: Path):
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "train.py", TRAIN)
        assert {"DD101", "DD110"} <= codes(await published(client, uri, version=1))

        def configure(diagnostics: Any) -> int:
            mark = len(client.notifications[PUBLISH])
            client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
                settings={"deepdive": {"diagnostics": diagnostics}}))
            return mark

        mark = configure({"enabled": True, "disabledRules": ["DD101"]})
        now = await published(client, uri, after=mark)
        assert "DD101" not in codes(now) and "DD110" in codes(now)
        mark = configure({"enabled": False, "disabledRules": ["DD101"]})
        assert not (await published(client, uri, after=mark)).diagnostics
        diag = types.Diagnostic(range=types.Range(start=types.Position(line=ITEM_LINE - 1, character=0),
                                                  end=types.Position(line=ITEM_LINE - 1, character=30)),
                                message="", code="DD110", source="deepdive")
        assert await code_actions(client, uri, diag) == {}  # turned off: nothing to fix either
        mark = configure({"enabled": True, "disabledRules": []})
        assert {"DD101", "DD110"} <= codes(await published(client, uri, after=mark))


async def test_a_bad_setting_is_reported_in_one_line_and_ignored(workspace: Path):
    async with editor(workspace, diagnostics={"enabled": "yes", "disabledRules": "DD110"}) as client:
        uri = open_file(client, workspace / "train.py", TRAIN)
        assert {"DD101", "DD110"} <= codes(await published(client, uri, version=1))
        said = [m.message for m in client.log_messages if "deepdive.diagnostics." in m.message]
        assert any("enabled must be true or false" in m for m in said), said
        assert any("disabledRules must be a list of rule codes" in m for m in said), said
        assert all("\n" not in m for m in said)


async def test_code_lens_above_the_training_loop_only_when_trusted(workspace: Path):
    for trusted in (True, False):
        async with editor(workspace, trusted=trusted) as client:
            uri = open_file(client, workspace / "train.py", TRAIN)
            await published(client, uri, version=1)
            lenses = await client.text_document_code_lens_async(types.CodeLensParams(
                text_document=types.TextDocumentIdentifier(uri=uri)))
            if not trusted:
                assert not lenses
                diag = by_code(client.notifications[PUBLISH][-1], "DD101")
                titles = set(await code_actions(client, uri, diag))
                assert "Apply and measure DD101 fix…" not in titles and "Ignore DD101 on this line" in titles
                continue
            assert lenses is not None and len(lenses) == 1
            lens = lenses[0]
            assert lens.range.start.line == LOOP_LINE - 1
            assert lens.command is not None and lens.command.title == "$(pulse) Diagnose performance"
            assert lens.command.command == "deepdive.diagnosePerformance" and list(lens.command.arguments or []) == [uri]
            helper = open_file(client, workspace / "helpers.py", "def f(x):\n    return x + 1\n")
            await published(client, helper, version=1)
            assert not await client.text_document_code_lens_async(types.CodeLensParams(
                text_document=types.TextDocumentIdentifier(uri=helper)))


def _report(script: Path, findings: list[DiagnosisFinding]) -> DiagnosisReport:
    return DiagnosisReport(
        script=str(script), args=[], device="cpu", profiler="torch.profiler, CPU activities, stacks and shapes",
        warmup=3, steps=10, step_ms=12.0, step_ms_spread=[11.0, 14.0],
        breakdown=StepBreakdown(data_wait=1.0, forward=3.0, backward=3.0, optimizer=1.0, host_sync=3.7, copies=0.0,
                                communication=0.0, idle=0.3),
        findings=findings, hotspots=[], engine=False, wall_s=9.0, created=time.time())


async def test_a_measured_report_promotes_the_finding_with_its_share(workspace: Path):
    script = workspace / "train.py"
    async with editor(workspace) as client:
        uri = open_file(client, script, TRAIN)
        first = await published(client, uri, version=1)
        assert not any("step time" in d.message for d in first.diagnostics)
        report = _report(script.resolve(), [
            DiagnosisFinding(code="DD110", file=str(script.resolve()), line=ITEM_LINE, message="`.item()` per step",
                             part="host_sync", share=0.31, ms_per_step=3.7, evidence="aten::item ×8 per step",
                             promoted=True, fixable=False),
            DiagnosisFinding(code="DD101", file=str(script.resolve()), line=LOADER_LINE, message="no workers",
                             part="data_wait", share=None, ms_per_step=None, evidence=None, promoted=False,
                             fixable=True),
        ])
        target = report_path(str(script.resolve()), str(workspace.resolve()))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(to_wire(report)), encoding="utf-8")
        mark = len(client.notifications[PUBLISH])
        save(client, uri)
        after = await published(client, uri, after=mark)
        item = by_code(after, "DD110")
        original = by_code(first, "DD110").message
        assert item.message == f"31 % of step time (measured on cpu): {original}"
        assert item.severity == types.DiagnosticSeverity.Warning
        loader = by_code(after, "DD101")
        assert loader.severity == types.DiagnosticSeverity.Hint
        assert loader.message == by_code(first, "DD101").message + " (no cost measured in the last diagnosis)"


@pytest.mark.slow
async def test_a_diagnose_job_ending_republishes_with_the_new_report(workspace: Path):
    """When a `diagnose` job ends, the open files' reports are read again without a save."""
    script = workspace / "train.py"
    (workspace / "quick.py").write_text("print('nothing to measure')\n", encoding="utf-8")
    async with editor(workspace) as client:
        uri = open_file(client, script, TRAIN)
        first = await published(client, uri, version=1)
        target = report_path(str(script.resolve()), str(workspace.resolve()))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(to_wire(_report(script.resolve(), [DiagnosisFinding(
            code="DD110", file=str(script.resolve()), line=ITEM_LINE, message="`.item()` per step",
            part="host_sync", share=0.5, ms_per_step=6.0, evidence="aten::item ×8 per step", promoted=True,
            fixable=False)]))), encoding="utf-8")
        mark = len(client.notifications[PUBLISH])
        job = await client.request(JOBS_START, JobStartParams(kind="diagnose", options={"path": "quick.py", "steps": 1,
                                                                                         "warmup": 0}))
        await client.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished", 120)
        after = await published(client, uri, after=mark)
        assert by_code(after, "DD110").message == "50 % of step time (measured on cpu): " + by_code(first, "DD110").message


async def test_the_daemon_answers_while_it_analyses_a_long_file(workspace: Path):
    text = long_training_file(2000)
    async with editor(workspace) as client:
        await client.request(VERSION)
        uri = open_file(client, workspace / "long_train.py", text)
        answered = await client.request(VERSION, timeout=10)
        assert answered.version == __version__
        # the answer came while the analysis was still running: its diagnostics had not been published yet
        assert not any(p.uri == uri for p in client.notifications[PUBLISH])
        assert len((await published(client, uri, version=1)).diagnostics) > 0


BLOCK = """\

class Net{i}(nn.Module):
    \"\"\"A small conv net, one of many in this long file.\"\"\"

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16 * 8 * 8, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(x.flatten(1))


def train_{i}(epochs: int = 2, lr: float = 3e-3):
    data = TensorDataset(torch.randn(256, 1, 16, 16), torch.randint(0, 10, (256,)))
    loader = DataLoader(data, batch_size=32, shuffle=True)
    model = Net{i}()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        model.train()
        for step, (x, y) in enumerate(loader):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(loss.item())
            if step % 50 == 0:
                print(f"epoch {{epoch}} step {{step}} loss {{loss.item():.4f}}")
    return model, history


def evaluate_{i}(model, loader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum()
            total += y.numel()
    return float(correct) / max(total, 1)
"""

HEADER = """\
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
"""


async def test_a_result_for_an_older_text_is_never_published(workspace: Path):
    async with editor(workspace) as client:
        uri = open_file(client, workspace / "long_train.py", long_training_file(2000))
        await client.request(VERSION)  # the daemon has taken the long text into its analysis
        replace_text(client, uri, TRAIN, 2)  # typed over while the long text is being analysed
        latest = await published(client, uri, version=2)
        assert {"DD101", "DD110"} <= codes(latest)
        assert [p.version for p in client.notifications[PUBLISH] if p.uri == uri] == [2]


def long_training_file(lines: int) -> str:
    """A training script of at least ``lines`` lines: imports, then the same realistic block (a conv net, its
    training loop with ``.item()`` per step and a DataLoader without workers, an evaluation) repeated with
    numbered names. The benchmark times the daemon on the same file."""
    parts = [HEADER]
    count = HEADER.count("\n")
    i = 0
    while count < lines:
        block = BLOCK.format(i=i)
        parts.append(block)
        count += block.count("\n")
        i += 1
    return "".join(parts)


async def test_the_analysis_worker_ends_when_the_daemon_is_killed(tmp_path: Path):
    """A daemon killed with SIGKILL leaves no analysis worker behind: an orphaned worker kept the daemon's stderr open,
    and whoever read that stderr to its end (an editor, a test harness) waited for ever."""
    import signal

    import psutil

    async with editor(tmp_path) as client:
        uri = open_file(client, tmp_path / "train.py", TRAIN)
        await published(client, uri)
        daemon = psutil.Process(client.process.pid)
        workers = [p for p in daemon.children(recursive=True) if "multiprocessing" in " ".join(p.cmdline())]
        assert workers, [p.cmdline() for p in daemon.children(recursive=True)]
        os.kill(daemon.pid, signal.SIGKILL)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
