// The generations under review: their decoration, their CodeLenses, and the prompt-comment lenses.
import {
    CodeLens,
    CodeLensProvider,
    Disposable,
    EventEmitter,
    Range,
    TextDocument,
    TextEditor,
    TextEditorDecorationType,
    ThemeColor,
    Uri,
    window,
    workspace,
} from 'vscode';
import { Commands } from '../common/constants';
import { executeCommand } from '../common/vscodeapi';
import { PendingGeneration } from './pending';
import { findCommentPrompts } from './prompts';

/** The context key that is true while the active editor shows a generation to review. */
export const PENDING_CONTEXT = 'deepdive.generationPending';

export class GenerationReview implements CodeLensProvider, Disposable {
    private readonly pending: PendingGeneration[] = [];
    private readonly lensEmitter = new EventEmitter<void>();
    readonly onDidChangeCodeLenses = this.lensEmitter.event;
    private readonly decoration: TextEditorDecorationType;
    private readonly subscriptions: Disposable[];

    constructor() {
        this.decoration = window.createTextEditorDecorationType({
            backgroundColor: new ThemeColor('diffEditor.insertedTextBackground'),
            isWholeLine: true,
            overviewRulerColor: new ThemeColor('editorOverviewRuler.addedForeground'),
        });
        this.subscriptions = [
            workspace.onDidChangeTextDocument((e) => {
                let moved = false;
                for (const g of this.pending) {
                    moved = g.onDocumentChange(e) || moved;
                }
                if (moved) {
                    this.refresh();
                }
            }),
            workspace.onDidCloseTextDocument((doc) => {
                for (const g of this.pending.filter((x) => x.document === doc)) {
                    this.drop(g);
                }
            }),
            window.onDidChangeVisibleTextEditors(() => this.decorate()),
            window.onDidChangeActiveTextEditor(() => this.updateContext()),
        ];
    }

    add(g: PendingGeneration): void {
        this.pending.push(g);
        this.refresh();
    }

    drop(g: PendingGeneration): void {
        const i = this.pending.indexOf(g);
        if (i >= 0) {
            this.pending.splice(i, 1);
        }
        this.refresh();
    }

    all(): readonly PendingGeneration[] {
        return this.pending;
    }

    /** The generation an Accept/Reject without arguments means: the active editor's, else the newest. */
    find(ref?: unknown): PendingGeneration | undefined {
        const key = refKey(ref);
        if (typeof key === 'number') {
            return this.pending.find((g) => g.id === key);
        }
        if (key) {
            return [...this.pending].reverse().find((g) => g.uri.toString() === key);
        }
        const active = window.activeTextEditor?.document;
        return [...this.pending].reverse().find((g) => g.document === active) ?? this.pending[this.pending.length - 1];
    }

    inDocument(doc: TextDocument): PendingGeneration | undefined {
        return this.pending.find((g) => g.document === doc);
    }

    /** Redraws decorations and lenses after a change of state or text. */
    refresh(): void {
        this.decorate();
        this.updateContext();
        this.lensEmitter.fire();
    }

    provideCodeLenses(doc: TextDocument): CodeLens[] {
        const lenses: CodeLens[] = [];
        for (const g of this.pending.filter((x) => x.document === doc && x.state !== 'closed')) {
            const at = new Range(g.firstLine, g.firstLine);
            if (g.state === 'streaming') {
                lenses.push(new CodeLens(at, { title: '$(sync~spin) Deepdive is generating…  $(close) Cancel', command: Commands.rejectGeneration, arguments: [g.id] }));
                continue;
            }
            lenses.push(new CodeLens(at, { title: '$(check) Accept', command: Commands.acceptGeneration, arguments: [g.id] }));
            lenses.push(new CodeLens(at, { title: '$(discard) Reject', command: Commands.rejectGeneration, arguments: [g.id] }));
            if (g.summary) {
                lenses.push(new CodeLens(at, { title: `$(checklist) ${g.summary}`, command: Commands.showGenerationChecks, arguments: [g.id] }));
            }
        }
        if (doc.languageId === 'python') {
            for (const p of findCommentPrompts(doc.getText())) {
                const range = new Range(p.line, 0, p.line, 0);
                lenses.push(new CodeLens(range, {
                    title: '$(sparkle) Generate',
                    tooltip: `Deepdive: generate "${p.prompt}" below this comment`,
                    command: Commands.generateFromComment,
                    arguments: [doc.uri, p.line],
                }));
            }
        }
        return lenses;
    }

    private decorate(): void {
        for (const editor of window.visibleTextEditors) {
            this.decorateEditor(editor);
        }
    }

    private decorateEditor(editor: TextEditor): void {
        const ranges = this.pending
            .filter((g) => g.document === editor.document && g.state !== 'closed')
            .map((g) => g.bodyRange)
            .filter((r) => !r.isEmpty)
            .map((r) => (r.end.character === 0 && r.end.line > r.start.line ? new Range(r.start, r.end.translate(-1)) : r))
            .map((r) => new Range(r.start.line, 0, Math.max(r.start.line, r.end.line), 0));
        editor.setDecorations(this.decoration, ranges);
    }

    private updateContext(): void {
        const doc = window.activeTextEditor?.document;
        const on = !!doc && this.pending.some((g) => g.document === doc && g.state === 'review');
        void executeCommand('setContext', PENDING_CONTEXT, on);
    }

    dispose(): void {
        Disposable.from(...this.subscriptions).dispose();
        this.decoration.dispose();
        this.lensEmitter.dispose();
    }
}

/** A generation id (lens arguments), a URI (string or Uri) or `{uri}` (other callers, tests). */
function refKey(ref: unknown): number | string | undefined {
    if (typeof ref === 'number') {
        return ref;
    }
    if (typeof ref === 'string') {
        return ref;
    }
    if (ref instanceof Uri) {
        return ref.toString();
    }
    if (ref && typeof ref === 'object' && 'uri' in ref) {
        const u = ref.uri;
        return u instanceof Uri ? u.toString() : typeof u === 'string' ? u : undefined;
    }
    return undefined;
}
