// The code generation commands: ask for a prompt, stream the program into a read-only proposal shown
// as a diff against the document, insert it into the document (unsaved) on Accept, show how
// verification went. No file is written until the user saves.
import { guardCommand } from '../common/guard';
import * as os from 'os';
import * as path from 'path';
import {
    CancellationTokenSource,
    Disposable,
    ExtensionContext,
    languages,
    Position,
    ProgressLocation,
    QuickPickItem,
    Range,
    Selection,
    TextDocument,
    TextEditorRevealType,
    Uri,
    window,
    workspace,
} from 'vscode';
import { Commands, PROMPT_HISTORY_KEY, Schemes } from '../common/constants';
import { traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { getSettings } from '../common/settings';
import { executeCommand, getWorkspaceFolders, isTrusted, registerCommand } from '../common/vscodeapi';
import { GenerateParams, GeneratePartial, GenerateResult, Requests } from '../protocol';
import { ReadOnlyDocuments } from '../report/documents';
import { GenerateArgs, GenerateOutcome, parseGenerateArgs } from './args';
import { pushHistory, readHistory } from './history';
import { buildGenerateParams } from './params';
import { dataHint, dataNeed, dataSection } from './datahint';
import { InsertionTarget, PendingGeneration } from './pending';
import { closeProposal, PROPOSAL_SCHEME, ProposalDocuments, showProposal } from './proposals';
import { parsePromptLine } from './prompts';
import { cursorFraming, finalBody } from './region';
import { GenerationReview, SHOW_PROPOSAL_COMMAND } from './review';
import { GenerationStream } from './stream';
import { formatSummary, isVerified, renderChecks, SummaryContext, summaryIsWarning } from './summary';

export const CHECKS_URI = Uri.from({ scheme: Schemes.codegen, path: '/Generated Code Checks.md' });

/** Results kept for "Show Checks" (the newest ones). */
const FINISHED_KEPT = 20;

class Cancelled extends Error {
    constructor() {
        super('cancelled');
    }
}

interface Finished {
    prompt: string;
    result: GenerateResult;
    ctx: SummaryContext;
    /** The file name the program's run lines say (the document's, else the suggested one). */
    file: string;
}

export class CodegenController implements Disposable {
    readonly proposals = new ProposalDocuments();
    readonly review = new GenerationReview((g) => {
        this.cancels.get(g.id)?.cancel();
        void closeProposal(g.proposalUri);
    });
    private readonly cancels = new Map<number, CancellationTokenSource>();
    private readonly finished = new Map<number, Finished>();
    private last: Finished | undefined;

    constructor(
        private readonly server: DeepdiveServer,
        private readonly context: ExtensionContext,
        private readonly docs: ReadOnlyDocuments,
    ) {}

    register(): Disposable[] {
        return [
            this,
            this.docs.register(Schemes.codegen),
            this.proposals.register(),
            languages.registerCodeLensProvider(
                [{ scheme: 'file' }, { scheme: 'untitled' }, { scheme: 'vscode-notebook-cell', language: 'python' }, { scheme: PROPOSAL_SCHEME }],
                this.review,
            ),
            registerCommand(Commands.generateCode, (arg?: unknown) => this.guard('Generate code', () => this.generateCode(parseGenerateArgs(arg)))),
            registerCommand(Commands.generateIntoNewFile, (arg?: unknown) => this.guard('Generate into new file', () => this.generateIntoNewFile(parseGenerateArgs(arg)))),
            registerCommand(Commands.generateFromComment, (uri?: Uri | string, line?: number) =>
                this.guard('Generate from comment', () => this.generateFromComment(uri, line)),
            ),
            registerCommand(Commands.acceptGeneration, (ref?: unknown) => this.accept(ref)),
            registerCommand(Commands.rejectGeneration, (ref?: unknown) => this.reject(ref)),
            registerCommand(Commands.showGenerationChecks, (ref?: unknown) => this.showChecks(ref)),
            registerCommand(SHOW_PROPOSAL_COMMAND, (ref?: unknown) => this.showProposal(ref)),
        ];
    }

    /** Runs a command body; a failure is one error message (and a 'failed' outcome for callers). */
    private guard(what: string, fn: () => Promise<GenerateOutcome>): Promise<GenerateOutcome> {
        return guardCommand(what, fn);
    }

    // ---- the commands -------------------------------------------------------------------------

    private async generateCode(a: GenerateArgs): Promise<GenerateOutcome> {
        const prompt = a.prompt ?? (await this.askPrompt('Generate Code'));
        if (!prompt) {
            return { state: 'no-prompt' };
        }
        let doc: TextDocument;
        let at: Position;
        if (a.uri) {
            doc = await workspace.openTextDocument(Uri.parse(a.uri));
            const editor = window.visibleTextEditors.find((e) => e.document === doc);
            at = a.line !== undefined ? doc.validatePosition(new Position(a.line, a.character ?? 0)) : (editor?.selection.active ?? doc.positionAt(doc.getText().length));
        } else {
            const editor = window.activeTextEditor ?? (await this.newPythonEditor());
            doc = editor.document;
            at = a.line !== undefined ? doc.validatePosition(new Position(a.line, a.character ?? 0)) : editor.selection.active;
        }
        const line = doc.lineAt(at.line).text;
        const framing = cursorFraming(line.slice(0, at.character), line.slice(at.character));
        return this.run(prompt, { document: doc, offset: doc.offsetAt(at), ...framing, indent: '' }, a.quiet === true);
    }

    private async generateFromComment(uriArg: Uri | string | undefined, line: number | undefined): Promise<GenerateOutcome> {
        const uri = typeof uriArg === 'string' ? Uri.parse(uriArg) : uriArg ?? window.activeTextEditor?.document.uri;
        if (!uri) {
            throw new Error('no document given');
        }
        const doc = await workspace.openTextDocument(uri);
        const lineNo = line ?? window.activeTextEditor?.selection.active.line ?? 0;
        const p = lineNo < doc.lineCount ? parsePromptLine(doc.lineAt(lineNo).text) : undefined;
        if (!p) {
            throw new Error(`line ${lineNo + 1} is not a "# deepdive: <prompt>" comment any more`);
        }
        const last = lineNo === doc.lineCount - 1;
        const target: InsertionTarget = last
            ? { document: doc, offset: doc.offsetAt(doc.lineAt(lineNo).range.end), prefix: '\n', suffix: '\n', indent: p.indent }
            : { document: doc, offset: doc.offsetAt(new Position(lineNo + 1, 0)), prefix: '', suffix: '\n', indent: p.indent };
        return this.run(p.prompt, target, false);
    }

    /** A new file: the proposal streams alone, then becomes an untitled document (never written until saved). */
    private async generateIntoNewFile(a: GenerateArgs): Promise<GenerateOutcome> {
        const prompt = a.prompt ?? (await this.askPrompt('Generate into New File'));
        if (!prompt) {
            return { state: 'no-prompt' };
        }
        const outcome = await this.run(prompt, { document: undefined, offset: 0, prefix: '', suffix: '', indent: '' }, true);
        if (outcome.state === 'no-program') {
            if (!a.quiet && this.last) {
                this.showNoProgram(this.last, outcome.summary ?? '');
            }
            return outcome;
        }
        const g = this.review.find(outcome.uri);
        if (outcome.state !== 'review' || !g) {
            return outcome;
        }
        // A new file is the program itself: nothing to accept or reject, only to save.
        const doc = await workspace.openTextDocument({ language: 'python', content: g.program });
        await closeProposal(g.proposalUri);
        this.review.drop(g);
        await window.showTextDocument(doc, { preview: false });
        if (!a.quiet) {
            void this.offerSave(doc, this.finished.get(g.id), outcome.summary ?? '');
        }
        return { ...outcome, state: 'accepted', uri: doc.uri.toString(), text: doc.getText() };
    }

    /** Inserts the proposal into its document with one edit; the document stays unsaved (auto-save saves it if the user has it on). */
    async accept(ref?: unknown): Promise<boolean> {
        const g = this.review.find(ref);
        if (!g) {
            if (typeof ref !== 'number') {
                // (a number is a generation already dealt with, from an old notification or lens)
                void window.showInformationMessage('Deepdive: there is no generated code to accept.');
            }
            return false;
        }
        if (g.state === 'streaming') {
            void window.showInformationMessage('Deepdive: the program is still being generated; accept it once it is complete.');
            return false;
        }
        if (g.state === 'closed') {
            return false;
        }
        const at = g.anchor;
        const outcome = await g.apply();
        if (outcome === 'lost') {
            void window.showWarningMessage('Deepdive: cannot accept: the text where the program was to go was replaced; copy it from the proposal or generate again.');
            return false;
        }
        if (outcome !== 'applied' || !g.document || at === undefined) {
            void window.showWarningMessage(`Deepdive: cannot accept: ${outcome === 'closed' ? 'the document was closed' : 'the editor refused the edit'}; generate again.`);
            return false;
        }
        const doc = g.document;
        this.review.drop(g);
        await closeProposal(g.proposalUri);
        const start = doc.positionAt(at);
        const editor = await window.showTextDocument(doc, { preview: false });
        editor.selection = new Selection(start, start);
        editor.revealRange(new Range(start, start), TextEditorRevealType.InCenterIfOutsideViewport);
        return true;
    }

    /** Closes the proposal (cancelling it while it streams); the document is not touched. */
    async reject(ref?: unknown): Promise<boolean> {
        const g = this.review.find(ref);
        if (!g) {
            if (typeof ref !== 'number') {
                void window.showInformationMessage('Deepdive: there is no generated code to reject.');
            }
            return false;
        }
        this.cancels.get(g.id)?.cancel(); // while streaming: run() ends and closes the proposal
        this.review.drop(g);
        await closeProposal(g.proposalUri);
        return true;
    }

    async showProposal(ref?: unknown): Promise<void> {
        const g = this.review.find(ref);
        if (!g) {
            void window.showInformationMessage('Deepdive: there is no proposed code to show.');
            return;
        }
        await showProposal(g.proposalUri, g.document?.uri);
    }

    async showChecks(ref?: unknown): Promise<void> {
        const g = ref === undefined ? undefined : this.review.find(ref);
        const f = (g && this.finished.get(g.id)) ?? this.last;
        if (!f) {
            void window.showInformationMessage('Deepdive: no program has been generated yet.');
            return;
        }
        await this.docs.show(CHECKS_URI, checksPage(f));
    }

    // ---- the generation itself -----------------------------------------------------------------

    private async run(prompt: string, target: InsertionTarget, quiet: boolean): Promise<GenerateOutcome> {
        const doc = target.document;
        if (doc?.uri.scheme === PROPOSAL_SCHEME) {
            throw new Error('a proposal is read-only: accept or reject it, then generate in the document');
        }
        const busy = doc && this.review.inDocument(doc);
        if (busy) {
            throw new Error(
                busy.state === 'streaming'
                    ? 'a program is already being generated for this document; cancel it or wait for it'
                    : 'a proposal for this document is under review; accept or reject it first',
            );
        }
        const settings = getSettings().codegen;
        const trusted = isTrusted();
        const params = buildGenerateParams(prompt, settings, trusted);
        const ctx: SummaryContext = { verifyRequested: settings.verify, trusted };
        traceInfo(`Generating code (${params.backend}, verify ${String(params.verify)}): ${prompt}`);

        const g = new PendingGeneration(target, prompt, this.proposals);
        this.review.add(g);
        const cts = new CancellationTokenSource();
        this.cancels.set(g.id, cts);
        let result: GenerateResult;
        try {
            await showProposal(g.proposalUri, doc?.uri);
            result = await this.request(g, params, cts);
            if (g.state === 'closed' || doc?.isClosed) {
                throw new Cancelled();
            }
            if (result.code === '') {
                // no program: the builtin cannot build the request as asked (the result says what is missing)
                this.review.drop(g);
                await closeProposal(g.proposalUri);
                return this.noProgram(prompt, result, ctx, doc?.uri, quiet);
            }
            g.result = result;
            g.setBody(finalBody(result.code, target.suffix), true);
            await g.settled();
        } catch (err) {
            const wasCancelled = err instanceof Cancelled || cts.token.isCancellationRequested;
            this.review.drop(g);
            await closeProposal(g.proposalUri).catch(() => undefined);
            if (wasCancelled) {
                traceInfo('Code generation cancelled; the proposal was closed');
                return { state: 'cancelled', uri: g.uri.toString() };
            }
            throw err;
        } finally {
            this.cancels.delete(g.id);
            cts.dispose();
        }
        return this.toReview(g, prompt, result, ctx, quiet);
    }

    /** Sends the request; the streamed program goes into the proposal as it arrives. */
    private request(g: PendingGeneration, params: GenerateParams, cts: CancellationTokenSource): Promise<GenerateResult> {
        const stream = new GenerationStream();
        return Promise.resolve(
            window.withProgress({ location: ProgressLocation.Notification, title: 'Deepdive: generating code', cancellable: true }, async (progress, token) => {
                const sub = token.onCancellationRequested(() => cts.cancel());
                progress.report({ message: 'starting' });
                const cancelled = new Promise<never>((_, reject) => {
                    if (cts.token.isCancellationRequested) {
                        reject(new Cancelled());
                    }
                    cts.token.onCancellationRequested(() => reject(new Cancelled()));
                });
                const request = this.server.requestWithProgress<typeof Requests.generate, GeneratePartial>(Requests.generate, params, {
                    onPartial: (p) => {
                        if (g.state !== 'streaming') {
                            return;
                        }
                        const change = stream.apply(p);
                        if (change === 'text') {
                            g.setBody(stream.text);
                        }
                        if (change !== 'none') {
                            progress.report({ message: stream.progressLabel() });
                        }
                    },
                    onWorkDone: (v) => {
                        if (v.kind === 'report' && v.message && stream.phase === undefined) {
                            progress.report({ message: v.message });
                        }
                    },
                    token: cts.token,
                });
                request.catch(() => undefined); // when the cancel wins the race
                try {
                    return await Promise.race([request, cancelled]);
                } finally {
                    sub.dispose();
                }
            }),
        );
    }

    /** The program is complete: the proposal waits for Accept or Reject. */
    private toReview(g: PendingGeneration, prompt: string, result: GenerateResult, ctx: SummaryContext, quiet: boolean): GenerateOutcome {
        g.summary = formatSummary(result, ctx);
        g.data = dataNeed(result);
        g.state = 'review';
        const finished: Finished = { prompt, result, ctx, file: g.runName ?? (result.filename || 'generated.py') };
        this.finished.set(g.id, finished);
        for (const id of [...this.finished.keys()].slice(0, -FINISHED_KEPT)) {
            this.finished.delete(id);
        }
        this.last = finished;
        this.review.refresh();
        traceInfo(`Generated ${result.code.split('\n').length} lines with ${result.backend}: ${g.summary}`);
        if (!quiet) {
            void this.notifyReview(g, finished);
        }
        return { state: 'review', uri: g.uri.toString(), text: g.program, summary: g.summary, verified: isVerified(result) };
    }

    /** A result without a program: nothing is proposed; the summary says what is missing and what a model would add. */
    private noProgram(prompt: string, result: GenerateResult, ctx: SummaryContext, uri: Uri | undefined, quiet: boolean): GenerateOutcome {
        const finished: Finished = { prompt, result, ctx, file: result.filename || 'generated.py' };
        this.last = finished;
        const summary = formatSummary(result, ctx);
        traceInfo(`No program generated: ${summary}`);
        if (!quiet) {
            this.showNoProgram(finished, summary);
        }
        return { state: 'no-program', uri: uri?.toString(), summary, verified: false };
    }

    private showNoProgram(f: Finished, summary: string): void {
        void window.showWarningMessage(`Deepdive: ${summary}`, 'Show Details').then((choice) => {
            if (choice === 'Show Details') {
                this.last = f;
                void this.docs.show(CHECKS_URI, checksPage(f));
            }
        });
    }

    private async notifyReview(g: PendingGeneration, f: Finished): Promise<void> {
        const show = summaryIsWarning(f.result, f.ctx) ? window.showWarningMessage : window.showInformationMessage;
        const data = g.data ? ` · ${dataHint(g.data)}` : '';
        const choice = await show(`Deepdive: ${g.summary ?? ''}${data}`, 'Accept', 'Reject', 'Show Checks');
        if (choice === 'Accept') {
            await this.accept(g.id);
        } else if (choice === 'Reject') {
            await this.reject(g.id);
        } else if (choice === 'Show Checks') {
            this.last = f;
            await this.showChecks(g.id);
        }
    }

    private async offerSave(doc: TextDocument, f: Finished | undefined, summary: string): Promise<void> {
        const show = f && summaryIsWarning(f.result, f.ctx) ? window.showWarningMessage : window.showInformationMessage;
        const choice = await show(`Deepdive: ${summary}`, 'Save As…', 'Show Checks');
        if (choice === 'Show Checks' && f) {
            this.last = f;
            await this.docs.show(CHECKS_URI, checksPage(f));
        } else if (choice === 'Save As…') {
            await this.saveAs(doc, f?.result.filename || 'generated.py');
        }
    }

    /** Saves an untitled document under the suggested name (in the workspace folder) and opens the file. */
    private async saveAs(doc: TextDocument, filename: string): Promise<void> {
        const folder = getWorkspaceFolders()[0]?.uri;
        const base = path.basename(filename);
        const defaultUri = folder ? Uri.joinPath(folder, base) : Uri.file(path.join(os.homedir(), base));
        const target = await window.showSaveDialog({ defaultUri, filters: { Python: ['py'] }, saveLabel: 'Save Generated Code' });
        if (!target) {
            return;
        }
        await workspace.fs.writeFile(target, Buffer.from(doc.getText(), 'utf8'));
        if (doc.isUntitled && !doc.isClosed) {
            await window.showTextDocument(doc);
            await executeCommand('workbench.action.revertAndCloseActiveEditor');
        }
        await window.showTextDocument(await workspace.openTextDocument(target), { preview: false });
    }

    private async newPythonEditor() {
        const doc = await workspace.openTextDocument({ language: 'python', content: '' });
        return window.showTextDocument(doc, { preview: false });
    }

    /** A QuickPick over the prompt history that also takes a new prompt. */
    private async askPrompt(title: string): Promise<string | undefined> {
        const history = readHistory(this.context.globalState.get(PROMPT_HISTORY_KEY));
        const qp = window.createQuickPick<QuickPickItem>();
        qp.title = `Deepdive: ${title}`;
        qp.placeholder = 'Describe the program, e.g. "a resnet18 for cifar-10 with mixed precision" (English or 中文)';
        qp.ignoreFocusOut = true;
        const recent: QuickPickItem[] = history.map((h) => ({ label: h, description: 'recent prompt' }));
        qp.items = recent;
        const prompt = await new Promise<string | undefined>((resolve) => {
            const subs = [
                qp.onDidChangeValue((v) => {
                    const t = v.trim();
                    qp.items = t && !history.includes(t) ? [{ label: t, description: 'new prompt', alwaysShow: true }, ...recent] : recent;
                }),
                qp.onDidAccept(() => {
                    resolve(qp.selectedItems[0]?.label ?? (qp.value.trim() || undefined));
                    qp.hide();
                }),
                qp.onDidHide(() => {
                    resolve(undefined);
                    Disposable.from(...subs).dispose();
                    qp.dispose();
                }),
            ];
            qp.show();
        });
        if (prompt) {
            await this.context.globalState.update(PROMPT_HISTORY_KEY, pushHistory(history, prompt));
        }
        return prompt;
    }

    dispose(): void {
        for (const cts of this.cancels.values()) {
            cts.cancel();
        }
        this.review.dispose();
        this.proposals.dispose();
    }
}

/** The checks page, with the Data section when the program reads a data set. */
function checksPage(f: Finished): string {
    const data = dataSection(dataNeed(f.result), f.file);
    return renderChecks(f.prompt, f.result, f.ctx) + (data.length > 0 ? '\n' + data.join('\n') : '');
}
