"""The tour's performance-diagnostics step, driven over LSP as the editor drives it.

A training script whose DataLoader restarts its worker processes every epoch (a corpus script with one
planted problem) is opened in the daemon: the static rules' diagnostics and code actions arrive as the
editor would show them; the ``diagnose`` job measures a few steps under torch.profiler and the
diagnostics come back promoted with their measured share; the ``diagnose-fix`` job times the script and
its fixed copy in alternating pairs and reports the speed-up with its confidence interval. The script on
disk is never changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from lsprotocol import types
from rich.console import Console

from deepdive.lspclient import DaemonClient
from deepdive.protocol import JOBS_EVENT, JOBS_START, JobStartParams

SCRIPT = Path("tests") / "diagnostics" / "corpus" / "slow" / "dd176_workers_restarted_each_epoch.py"
NAME = "windows.py"
PUBLISH = types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS


def watch_diagnostics(client: DaemonClient) -> list[types.PublishDiagnosticsParams]:
    """Collect the daemon's publishDiagnostics (register before the daemon starts, as an editor does)."""
    published: list[types.PublishDiagnosticsParams] = []

    @client.feature(PUBLISH)
    def _published(params: types.PublishDiagnosticsParams) -> None:
        published.append(params)

    return published


async def diagnose_step(client: DaemonClient, published: list[types.PublishDiagnosticsParams], repo: Path,
                        workspace: Path, console: Console) -> int:
    """Run the step; 0 when every part did what it says, 1 (after saying why) otherwise."""
    script = workspace / NAME
    shutil.copyfile(repo / SCRIPT, script)
    text = script.read_text(encoding="utf-8")
    uri = script.as_uri()

    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    first = await _diagnostics(published, uri, 0)
    console.print(f"opened {NAME}: {len(first.diagnostics)} diagnostic(s) on open (static rules, no torch)")
    for d in first.diagnostics:
        console.print(f"  line {d.range.start.line + 1}: {d.code} {d.message}", highlight=False)
    target = next((d for d in first.diagnostics if d.code == "DD176"), None)
    if target is None:
        console.print("[red]the planted DD176 (DataLoader workers restarted every epoch) was not reported")
        return 1
    line = target.range.start.line + 1
    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=target.range,
        context=types.CodeActionContext(diagnostics=[target])))
    titles = [a.title for a in actions or []]
    console.print(f"  code actions on line {line}: " + "; ".join(titles), highlight=False)

    console.print("measuring 10 steps under torch.profiler (the `diagnose` job)…")
    mark = len(published)
    done = await _job(client, "diagnose", {"path": NAME, "steps": 10, "warmup": 3})
    if done.state != "succeeded":
        console.print(f"[red]the diagnosis failed: {done.reason}")
        return 1
    report = json.loads(Path(done.result["report"]).read_text(encoding="utf-8"))
    parts = {k: v for k, v in report["breakdown"].items() if v > 0}
    console.print(f"  median step {report['step_ms']:.2f} ms on {report['device']}: " + ", ".join(
        f"{k.replace('_', ' ')} {v / report['step_ms']:.0%}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    promoted = await _diagnostics(published, uri, mark, lambda p: any(
        d.code == "DD176" and "step time" in d.message for d in p.diagnostics))
    for d in promoted.diagnostics:
        if d.code == "DD176":
            console.print(f"  the editor now shows, line {d.range.start.line + 1}: {d.message}", highlight=False)

    console.print("Apply and measure: the fix on a copy, both timed in 6 alternating pairs (the `diagnose-fix` job)…")
    fixed = await _job(client, "diagnose-fix", {"path": NAME, "code": "DD176", "line": line, "pairs": 6,
                                                "steps": 10, "warmup": 3})
    if fixed.state != "succeeded":
        console.print(f"[red]apply and measure failed: {fixed.reason}")
        return 1
    s = json.loads(Path(fixed.result["speedup"]).read_text(encoding="utf-8"))
    console.print(f"  {s['title']}: {s['baseline_ms']:.2f} → {s['fixed_ms']:.2f} ms/step, speed-up {s['speedup']:.2f}× "
                  f"({s['confidence']:.1%} CI {s['ci_low']:.2f}–{s['ci_high']:.2f}×, {s['pairs']} pairs): "
                  f"{s['verdict']}", highlight=False)
    unchanged = script.read_text(encoding="utf-8") == text
    console.print(f"  {NAME} on disk unchanged: {unchanged} (the editor's Keep puts the fix in the buffer)")
    return 0 if unchanged else 1


async def _diagnostics(published: list[types.PublishDiagnosticsParams], uri: str, after: int,
                       accept: Any = None, timeout: float = 60.0) -> types.PublishDiagnosticsParams:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in published[after:]:
            if p.uri == uri and (accept is None or accept(p)):
                return p
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no diagnostics for {uri} within {timeout:.0f} s")


async def _job(client: DaemonClient, kind: str, options: dict[str, Any]) -> Any:
    job = await client.request(JOBS_START, JobStartParams(kind=kind, options=options))
    done = await client.wait_for(JOBS_EVENT.method, lambda e: e.job_id == job.id and e.type == "finished",
                                 timeout=600)
    return done.job
