"""Performance diagnostics in the editor: the static rules' findings as LSP diagnostics, fixes and a CodeLens.

The daemon analyses each open Python file (``file:`` scheme) with :func:`deepdive.diagnose.rules.analyze`
when it is opened or saved, and 300 ms after the last change while the user types. The analysis runs in
a worker process (:mod:`deepdive.daemon.analysis_worker`), one at a time per document: every rule on a
2,000-line training file costs 100–350 ms of CPU here (``bench/bench_diagnostics_lsp.py``), far more than a
request may wait, and in a thread it held the daemon's GIL. A result for a text that has changed since, or
computed under settings that have changed since, is dropped. A save with no edit since the last analysis
reuses it.

A finding becomes a diagnostic with code ``DD1xx``, source ``deepdive`` and a link to its section of the
installed rule page (``deepdive/diagnose/rules.md#dd110``). When ``deepdive diagnose`` has measured the
script (its report lies at :func:`deepdive.diagnose.report.report_path`), a finding the report promoted
(same code, same line) carries its measured share of the step time and stays a warning; the others turn
into hints that say no cost was measured. The report is read again when the file is opened or saved and
when a ``diagnose`` job ends.

Code actions: the rule's mechanical fix, a suppression comment for the line, and in a trusted workspace
*Apply and measure* (the extension runs a ``diagnose-fix`` job). A CodeLens above the first training step
loop starts a diagnosis (trusted workspaces only: it runs the user's script). With diagnostics turned off
there are no diagnostics, code actions or lens.

Settings (``deepdive.diagnostics.enabled`` and ``.disabledRules``) arrive in ``initializationOptions``
and ``workspace/didChangeConfiguration``; a change re-analyses every open file. This module never
imports torch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional
from urllib.parse import unquote, urlparse

import attrs
from lsprotocol import types

from deepdive.diagnose import rules as rule_set
from deepdive.daemon.analysis_worker import Analysis, AnalysisWorker, analyse_source, first_step_loop
from deepdive.diagnose.rules import Edit, Finding
from deepdive.diagnose.report import read_report, report_path

if TYPE_CHECKING:
    from deepdive.daemon.language_server import DeepdiveServer

log = logging.getLogger("deepdive.daemon.diagnostics")

SOURCE = "deepdive"
DEBOUNCE_S = 0.3
"""How long typing must pause before the changed text is analysed."""
NOT_MEASURED = " (no cost measured in the last diagnosis)"
LENS_TITLE = "$(pulse) Diagnose performance"
LENS_COMMAND = "deepdive.diagnosePerformance"
APPLY_AND_MEASURE = "deepdive.applyAndMeasureFix"
RULE_PAGE = Path(rule_set.__file__).resolve().parent.parent / "rules.md"
"""The rule page installed with the package (``deepdive/diagnose/rules.md``); each code is an anchor on it."""

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class Settings:
    """``deepdive.diagnostics.*``: whether diagnostics are shown, and the rule codes turned off."""

    enabled: bool = True
    disabled_rules: frozenset[str] = frozenset()


def parse_settings(value: Any, current: Settings = Settings()) -> Settings:
    """``{enabled, disabledRules}`` as the client sends them; a missing key keeps ``current``'s value.

    A value of the wrong type is logged in one line that says what to write, and the current value is kept:
    a typo in settings.json never turns diagnostics off.
    """
    if value is None:
        return current
    if not isinstance(value, dict):
        log.warning("deepdive.diagnostics must be an object like {\"enabled\": true, \"disabledRules\": []}, "
                    "got %s: settings unchanged", _shown(value))
        return current
    enabled = current.enabled
    if "enabled" in value:
        if isinstance(value["enabled"], bool):
            enabled = value["enabled"]
        else:
            log.warning("deepdive.diagnostics.enabled must be true or false, got %s: kept %s",
                        _shown(value["enabled"]), str(enabled).lower())
    disabled = current.disabled_rules
    if "disabledRules" in value:
        codes = value["disabledRules"]
        if isinstance(codes, list) and all(isinstance(code, str) for code in codes):
            disabled = frozenset(code.strip().upper() for code in codes if code.strip())
            unknown = sorted(disabled - set(rule_set.RULES))
            if unknown:
                log.warning("deepdive.diagnostics.disabledRules names no rule %s (rule codes look like DD101)",
                            ", ".join(unknown))
        else:
            log.warning("deepdive.diagnostics.disabledRules must be a list of rule codes such as [\"DD101\"], "
                        "got %s: kept %s", _shown(codes), sorted(disabled))
    return Settings(enabled=enabled, disabled_rules=disabled)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# The measured report
# ---------------------------------------------------------------------------------------------


@attrs.frozen
class Measured:
    """What the last measured diagnosis of a script says about its static findings."""

    device: str
    promoted: dict[tuple[str, int], float]
    """(code, line) → measured share of the step time (0..1) of each promoted finding."""
    signature: tuple[int, int]
    """The report file's (mtime_ns, size) when read."""


def read_measured(path: Path, script: str, previous: Optional[Measured] = None) -> Optional[Measured]:
    """What the report at ``path`` measured in ``script``; None when there is no report of that script (none at
    all, one of another script with the same name, or one that cannot be read: logged in one line).

    Only the findings in ``script`` itself count (a report also lists lines of the modules it imports).
    ``previous`` is returned as is when the file has not changed since it was read.
    """
    try:
        stat = path.stat()
    except OSError:
        return None
    signature = (stat.st_mtime_ns, stat.st_size)
    if previous is not None and previous.signature == signature:
        return previous
    try:
        report = read_report(path)
    except ValueError as exc:
        log.warning("%s: run Deepdive: Diagnose Performance again", str(exc).splitlines()[0])
        return None
    here = os.path.realpath(script)
    if os.path.realpath(report.script) != here:
        return None
    promoted = {(f.code.upper(), f.line): f.share for f in report.findings
                if f.promoted and f.share is not None and os.path.realpath(f.file) == here}
    return Measured(device=report.device, promoted=promoted, signature=signature)


# ---------------------------------------------------------------------------------------------
# Positions: rules count characters; LSP counts the negotiated encoding's code units (UTF-16 by default)
# ---------------------------------------------------------------------------------------------


def _units(text: str, encoding: Optional[str]) -> int:
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8"))
    if encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _line_text(lines: tuple[str, ...], line: int) -> str:
    """The 1-based line without its line break ('' past the end)."""
    return lines[line - 1].rstrip("\r\n") if 1 <= line <= len(lines) else ""


def _position(lines: tuple[str, ...], line: int, col: int, encoding: Optional[str]) -> types.Position:
    if line > len(lines):  # an edit at the very end of the file
        return types.Position(line=len(lines), character=0)
    return types.Position(line=line - 1, character=_units(_line_text(lines, line)[:col], encoding))


def _range(lines: tuple[str, ...], line: int, col: int, end_line: int, end_col: int,
           encoding: Optional[str]) -> types.Range:
    return types.Range(start=_position(lines, line, col, encoding), end=_position(lines, end_line, end_col, encoding))


# ---------------------------------------------------------------------------------------------
# Open documents and their analyses
# ---------------------------------------------------------------------------------------------


@attrs.define
class Document:
    uri: str
    path: str
    analysis: Optional[Analysis] = None
    measured: Optional[Measured] = None
    published: list[types.Diagnostic] = attrs.field(factory=list)
    """The diagnostics last sent, in the order of ``analysis.findings`` (one per finding)."""
    ticket: int = 0
    """Bumped for each analysis asked for (and each change): only a result for the newest ticket is published."""
    running: bool = False
    """An analysis of this document is in its worker thread."""
    again: bool = False
    """An analysis was asked for while one ran: it runs again when it ends (one thread per document at most)."""
    reread: bool = False
    """The next analysis reads the measured report again too."""
    debounce: Optional[asyncio.TimerHandle] = None
    step_loop: Optional[tuple[Optional[int], Optional[int]]] = None
    """(version, line of the first step loop) for the CodeLens, found when the editor first asks for that version."""


def file_path(uri: str) -> Optional[str]:
    """The local path of a ``file:`` URI; None for any other scheme (untitled, git, vscode-notebook-cell…)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return unquote(parsed.path)


class Diagnostics:
    """The diagnostics feature of one daemon: open Python documents, their analyses, and what is published."""

    def __init__(self, ls: "DeepdiveServer") -> None:
        self.ls = ls
        self.settings = Settings()
        self.documents: dict[str, Document] = {}
        self.worker = AnalysisWorker()
        self._tasks: set[asyncio.Task[Any]] = set()

    def close(self) -> None:
        """Stop the analysis process (the daemon is shutting down)."""
        self.worker.close()

    # -- document lifecycle (called by the thin LSP handlers) -------------------------------------

    def opened(self, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        path = file_path(item.uri)
        if path is None or not (item.language_id == "python" or path.endswith((".py", ".pyi"))):
            return
        self.worker.start()
        self.documents[item.uri] = Document(uri=item.uri, path=path)
        self._spawn(self._analyse(item.uri, reread=True))

    def changed(self, params: types.DidChangeTextDocumentParams) -> None:
        doc = self.documents.get(params.text_document.uri)
        if doc is None:
            return
        doc.ticket += 1  # whatever is in flight describes an older text
        if doc.debounce is not None:
            doc.debounce.cancel()
        loop = asyncio.get_running_loop()
        doc.debounce = loop.call_later(DEBOUNCE_S, lambda: self._spawn(self._analyse(doc.uri, reread=False)))

    def saved(self, params: types.DidSaveTextDocumentParams) -> None:
        doc = self.documents.get(params.text_document.uri)
        if doc is None:
            return
        if doc.debounce is not None:
            doc.debounce.cancel()
            doc.debounce = None
        source_version = self.ls.workspace.get_text_document(doc.uri).version
        analysis = doc.analysis
        if (analysis is not None and not doc.running and analysis.version == source_version
                and analysis.disabled == self.settings.disabled_rules):
            # saved without a change since the last analysis (autosave, a no-op format): only the report is news
            self._spawn(self._refresh_report(doc, republish=True))
            return
        self._spawn(self._analyse(doc.uri, reread=True))

    def closed(self, params: types.DidCloseTextDocumentParams) -> None:
        doc = self.documents.pop(params.text_document.uri, None)
        if doc is None:
            return
        doc.ticket += 1
        if doc.debounce is not None:
            doc.debounce.cancel()
        self._publish(doc.uri, [], None)

    def configure(self, value: Any) -> None:
        """New ``deepdive.diagnostics`` settings (initializationOptions or didChangeConfiguration)."""
        settings = parse_settings(value, self.settings)
        if settings == self.settings:
            return
        self.settings = settings
        for doc in list(self.documents.values()):
            if settings.enabled:
                self._spawn(self._analyse(doc.uri, reread=False))
            else:
                doc.ticket += 1
                doc.analysis = None
                doc.published = []
                self._publish(doc.uri, [], None)

    def configuration_changed(self, params: types.DidChangeConfigurationParams) -> None:
        """``settings = {deepdive: {diagnostics: {...}}}`` (vscode-languageclient's ``synchronize``)."""
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get("deepdive"), dict):
            self.configure(settings["deepdive"].get("diagnostics"))

    def reports_changed(self) -> None:
        """A ``diagnose`` job ended: read the reports of the open documents again and republish what changed."""
        self._spawn(self._refresh_reports())

    # -- analysis ---------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Task[Any]") -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("diagnostics failed", exc_info=task.exception())

    def _text(self, uri: str) -> tuple[str, Optional[int]]:
        document = self.ls.workspace.get_text_document(uri)
        return document.source, document.version

    def _report_file(self, doc: Document) -> Path:
        """Where ``deepdive diagnose`` writes this script's report (:func:`deepdive.diagnose.report.report_path`)."""
        return Path(report_path(doc.path, self.ls.workspace_root))

    async def _analyse(self, uri: str, *, reread: bool) -> None:
        """Analyse the document's current text in the worker process (one analysis per document at a time) and
        publish the result, unless the text or the settings changed meanwhile: then analyse again when asked,
        and publish only the newest."""
        doc = self.documents.get(uri)
        if doc is None or not self.settings.enabled:
            return
        doc.ticket += 1
        doc.reread = doc.reread or reread
        if doc.running:
            doc.again = True  # the analysis under way runs once more when it ends
            return
        doc.running = True
        try:
            while self.documents.get(uri) is doc and self.settings.enabled:
                ticket, settings, reread_now = doc.ticket, self.settings, doc.reread
                doc.reread = doc.again = False
                source, version = self._text(uri)
                report = self._report_file(doc) if reread_now else None
                previous = doc.measured
                try:
                    analysis = await self.worker.run(analyse_source, source, doc.path, settings.disabled_rules,
                                                     version)
                    measured = (await asyncio.to_thread(read_measured, report, doc.path, previous)
                                if report is not None else None)
                except Exception:  # a rule's fault: the traceback goes to the log, the daemon and the editor go on
                    log.exception("the diagnostics rules failed on %s: its diagnostics stay as they were", doc.path)
                    if not doc.again:
                        return
                    continue
                if doc.ticket == ticket and self.settings == settings:
                    if self.documents.get(uri) is doc:
                        doc.analysis = analysis
                        if report is not None:
                            doc.measured = measured
                        self._publish_findings(doc)
                    return
                doc.reread = doc.reread or reread_now  # stale: the text or the settings moved on
                if not doc.again:
                    return  # only the text changed: the debounce asks again once typing pauses
        finally:
            doc.running = False

    async def current(self, uri: str) -> Optional[Analysis]:
        """The analysis of the document's text as it is now (analysed now if the last one is older)."""
        doc = self.documents.get(uri)
        if doc is None or not self.settings.enabled:
            return None
        source, version = self._text(uri)
        analysis = doc.analysis
        if analysis is not None and analysis.version == version and analysis.disabled == self.settings.disabled_rules:
            return analysis
        return await self.worker.run(analyse_source, source, doc.path, self.settings.disabled_rules, version)

    async def _refresh_reports(self) -> None:
        for doc in list(self.documents.values()):
            await self._refresh_report(doc)

    async def _refresh_report(self, doc: Document, *, republish: bool = False) -> None:
        """Read the document's measured report again; republish its findings when it changed (or always)."""
        measured = await asyncio.to_thread(read_measured, self._report_file(doc), doc.path, doc.measured)
        if (measured is doc.measured and not republish) or self.documents.get(doc.uri) is not doc:
            return
        doc.measured = measured
        if doc.analysis is not None and self.settings.enabled and not doc.running:
            self._publish_findings(doc)

    # -- publishing -------------------------------------------------------------------------------

    def _publish_findings(self, doc: Document) -> None:
        assert doc.analysis is not None
        encoding = self.ls.workspace.position_encoding
        doc.published = [diagnostic(f, doc.analysis.lines, doc.measured, encoding) for f in doc.analysis.findings]
        self._publish(doc.uri, doc.published, doc.analysis.version)

    def _publish(self, uri: str, diagnostics: list[types.Diagnostic], version: Optional[int]) -> None:
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))

    # -- code actions and code lens ---------------------------------------------------------------

    async def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        only = params.context.only
        if only is not None and not any(types.CodeActionKind.QuickFix.startswith(kind) for kind in only):
            return []
        uri = params.text_document.uri
        analysis = await self.current(uri)
        doc = self.documents.get(uri)
        if analysis is None or doc is None:
            return []
        encoding = self.ls.workspace.position_encoding
        first, last = params.range.start.line + 1, params.range.end.line + 1
        actions: list[types.CodeAction] = []
        for finding in analysis.findings:
            if finding.end_line < first or finding.line > last:
                continue
            diag = diagnostic(finding, analysis.lines, doc.measured, encoding)
            actions.extend(actions_for(finding, diag, uri, analysis.lines, encoding, trusted=self.ls.trusted))
        return actions

    async def code_lenses(self, params: types.CodeLensParams) -> list[types.CodeLens]:
        uri = params.text_document.uri
        doc = self.documents.get(uri)
        if not self.ls.trusted or doc is None or not self.settings.enabled:
            return []  # a diagnosis runs the workspace's code: offered in trusted workspaces only
        source, version = self._text(uri)
        if doc.step_loop is None or doc.step_loop[0] != version:
            doc.step_loop = (version, await self.worker.run(first_step_loop, source, doc.path))
        line = doc.step_loop[1]
        if line is None:
            return []
        where = types.Position(line=line - 1, character=0)
        return [types.CodeLens(range=types.Range(start=where, end=where), command=types.Command(
            title=LENS_TITLE, command=LENS_COMMAND, arguments=[uri]))]


# ---------------------------------------------------------------------------------------------
# One finding on the wire
# ---------------------------------------------------------------------------------------------

_SEVERITY = {"warning": types.DiagnosticSeverity.Warning, "information": types.DiagnosticSeverity.Information,
             "hint": types.DiagnosticSeverity.Hint}


def rule_href(code: str) -> str:
    return f"{RULE_PAGE.as_uri()}#{code.lower()}"


def diagnostic(finding: Finding, lines: tuple[str, ...], measured: Optional[Measured],
               encoding: Optional[str]) -> types.Diagnostic:
    """The LSP diagnostic of a finding: promoted with its measured share, or a hint when the report has no cost."""
    message = finding.message
    severity = _SEVERITY.get(finding.severity, types.DiagnosticSeverity.Warning)
    if measured is not None:
        share = measured.promoted.get((finding.code.upper(), finding.line))
        if share is not None:
            message = f"{share * 100:.0f} % of step time (measured on {measured.device}): {message}"
            severity = types.DiagnosticSeverity.Warning
        else:
            message += NOT_MEASURED
            severity = types.DiagnosticSeverity.Hint
    return types.Diagnostic(
        range=_range(lines, finding.line, finding.col, finding.end_line, finding.end_col, encoding),
        message=message, severity=severity, code=finding.code, source=SOURCE,
        code_description=types.CodeDescription(href=rule_href(finding.code)),
    )


def _workspace_edit(uri: str, edits: Iterable[Edit], lines: tuple[str, ...],
                    encoding: Optional[str]) -> types.WorkspaceEdit:
    return types.WorkspaceEdit(changes={uri: [
        types.TextEdit(range=_range(lines, e.line, e.col, e.end_line, e.end_col, encoding), new_text=e.text)
        for e in edits
    ]})


_IGNORE_CODES = re.compile(r"(#\s*deepdive:\s*ignore\[)([A-Za-z0-9_,\s]+)(\])")


def ignore_edit(code: str, line: int, lines: tuple[str, ...]) -> Optional[Edit]:
    """The edit that suppresses ``code`` on the 1-based ``line``: the code added to the line's
    ``# deepdive: ignore[...]`` comment, or ``  # deepdive: ignore[CODE]`` appended to it.

    None when the line cannot carry a comment (it ends with a backslash continuation).
    """
    text = _line_text(lines, line)
    existing = _IGNORE_CODES.search(text)
    if existing is not None:
        codes = [c.strip() for c in existing.group(2).split(",") if c.strip()]
        joined = ", ".join(codes + [code])
        return Edit(line, existing.start(2), line, existing.end(2), joined)
    body = text.rstrip()
    if body.endswith("\\"):
        return None
    return Edit(line, len(body), line, len(text), f"  # deepdive: ignore[{code}]")


def actions_for(finding: Finding, diag: types.Diagnostic, uri: str, lines: tuple[str, ...],
                encoding: Optional[str], *, trusted: bool) -> list[types.CodeAction]:
    """The quick fix, the suppression and (trusted workspaces) *Apply and measure* of one finding."""
    actions: list[types.CodeAction] = []
    if finding.fix is not None:
        edit = _workspace_edit(uri, finding.fix.edits, lines, encoding)
        actions.append(types.CodeAction(title=f"Fix {finding.code}: {finding.fix.title}",
                                        kind=types.CodeActionKind.QuickFix, is_preferred=True,
                                        diagnostics=[diag], edit=edit))
    ignore = ignore_edit(finding.code, finding.line, lines)
    if ignore is not None:
        actions.append(types.CodeAction(title=f"Ignore {finding.code} on this line",
                                        kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
                                        edit=_workspace_edit(uri, [ignore], lines, encoding)))
    if trusted and finding.fix is not None:
        edit_json = _to_json(_workspace_edit(uri, finding.fix.edits, lines, encoding))
        actions.append(types.CodeAction(
            title=f"Apply and measure {finding.code} fix…", kind=types.CodeActionKind.QuickFix, diagnostics=[diag],
            command=types.Command(title=f"Apply and measure {finding.code} fix", command=APPLY_AND_MEASURE,
                                  arguments=[{"uri": uri, "code": finding.code, "line": finding.line,
                                              "title": finding.fix.title, "edit": edit_json}])))
    return actions


def _to_json(value: Any) -> Any:
    """An lsprotocol object as the JSON the client receives (a command's arguments are sent as they are)."""
    from lsprotocol import converters

    return converters.get_converter().unstructure(value)
