// The proposals under review: their CodeLenses (in the document and in the proposal), the context key
// of the Accept/Reject buttons, and the Generate lenses of prompt comments not answered yet.
import { CodeLens, CodeLensProvider, Disposable, EventEmitter, Position, Range, TabInputTextDiff, TextDocument, Uri, window, workspace } from 'vscode';
import { Commands } from '../common/constants';
import { executeCommand } from '../common/vscodeapi';
import { dataHint } from './datahint';
import { PendingGeneration } from './pending';
import { PROPOSAL_SCHEME } from './proposals';
import { findOpenPrompts } from './prompts';

/** The context key that is true while the active editor shows a proposal to review (its document or the diff). */
export const PENDING_CONTEXT = 'deepdive.generationPending';

/** Reopens a proposal's diff (lens only). */
export const SHOW_PROPOSAL_COMMAND = 'deepdive.showGenerationProposal';

export class GenerationReview implements CodeLensProvider, Disposable {
    private readonly pending: PendingGeneration[] = [];
    private readonly lensEmitter = new EventEmitter<void>();
    readonly onDidChangeCodeLenses = this.lensEmitter.event;
    private readonly subscriptions: Disposable[];

    /** @param onDocumentClosed called for each proposal whose document was closed (it is then dropped). */
    constructor(private readonly onDocumentClosed: (g: PendingGeneration) => void) {
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
                    this.onDocumentClosed(g);
                    this.drop(g);
                }
            }),
            window.onDidChangeActiveTextEditor(() => this.updateContext()),
            window.tabGroups.onDidChangeTabs(() => this.updateContext()),
        ];
    }

    add(g: PendingGeneration): void {
        this.pending.push(g);
        this.refresh();
    }

    /** Forgets a proposal (and its proposal text). */
    drop(g: PendingGeneration): void {
        const i = this.pending.indexOf(g);
        if (i >= 0) {
            this.pending.splice(i, 1);
        }
        g.close();
        this.refresh();
    }

    all(): readonly PendingGeneration[] {
        return this.pending;
    }

    /** The proposal an Accept/Reject without arguments means: the active editor's, else the newest. */
    find(ref?: unknown): PendingGeneration | undefined {
        const key = refKey(ref);
        if (typeof key === 'number') {
            return this.pending.find((g) => g.id === key);
        }
        if (key) {
            return [...this.pending].reverse().find((g) => g.uri.toString() === key || g.proposalUri.toString() === key);
        }
        return this.activeProposal() ?? this.pending[this.pending.length - 1];
    }

    /** The proposal a document belongs to: as the document it is proposed for, or as its proposal. */
    forDocument(doc: TextDocument): PendingGeneration | undefined {
        const key = doc.uri.toString();
        return [...this.pending].reverse().find((g) => g.document === doc || g.proposalUri.toString() === key);
    }

    inDocument(doc: TextDocument): PendingGeneration | undefined {
        return this.pending.find((g) => g.document === doc);
    }

    /** Redraws lenses and the context key after a change of state or text. */
    refresh(): void {
        this.updateContext();
        this.lensEmitter.fire();
    }

    provideCodeLenses(doc: TextDocument): CodeLens[] {
        const lenses: CodeLens[] = [];
        for (const g of this.pending.filter((x) => x.state !== 'closed')) {
            if (g.document === doc) {
                lenses.push(...reviewLenses(g, g.anchorPosition ?? new Position(0, 0), true));
            } else if (g.proposalUri.toString() === doc.uri.toString()) {
                lenses.push(...reviewLenses(g, doc.positionAt(g.proposalStart), false));
            }
        }
        if (doc.languageId === 'python' && doc.uri.scheme !== PROPOSAL_SCHEME) {
            for (const p of findOpenPrompts(doc.getText())) {
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

    /** The proposal the active editor shows: a proposal's diff tab (whichever side has focus), its document or the proposal. */
    private activeProposal(): PendingGeneration | undefined {
        const input = window.tabGroups.activeTabGroup.activeTab?.input;
        if (input instanceof TabInputTextDiff && input.modified.scheme === PROPOSAL_SCHEME) {
            const key = input.modified.toString();
            return this.pending.find((g) => g.proposalUri.toString() === key);
        }
        const doc = window.activeTextEditor?.document;
        return doc && this.forDocument(doc);
    }

    private updateContext(): void {
        void executeCommand('setContext', PENDING_CONTEXT, this.activeProposal()?.state === 'review');
    }

    dispose(): void {
        Disposable.from(...this.subscriptions).dispose();
        this.lensEmitter.dispose();
    }
}

/** A proposal's lenses: while streaming, Cancel; under review, Accept, Reject, the summary and the data it needs. */
function reviewLenses(g: PendingGeneration, at: Position, inDocument: boolean): CodeLens[] {
    const range = new Range(at, at);
    const lens = (title: string, command: string, tooltip?: string) => new CodeLens(range, { title, command, arguments: [g.id], tooltip });
    const out: CodeLens[] = [];
    if (g.state === 'streaming') {
        out.push(lens('$(sync~spin) Deepdive is generating a proposal…  $(close) Cancel', Commands.rejectGeneration));
        if (inDocument) {
            out.push(lens('$(diff) Show Proposal', SHOW_PROPOSAL_COMMAND));
        }
        return out;
    }
    if (inDocument && g.anchor === undefined) {
        out.push(lens('$(warning) The text where the program was to go was replaced: copy it from the proposal or generate again', SHOW_PROPOSAL_COMMAND));
        out.push(lens('$(discard) Reject', Commands.rejectGeneration));
        return out;
    }
    out.push(lens('$(check) Accept', Commands.acceptGeneration, 'Insert the proposed program into this document (unsaved)'));
    out.push(lens('$(discard) Reject', Commands.rejectGeneration, 'Close the proposal; the document is not changed'));
    if (inDocument) {
        out.push(lens('$(diff) Show Proposal', SHOW_PROPOSAL_COMMAND));
    }
    if (g.summary) {
        out.push(lens(`$(checklist) ${g.summary}`, Commands.showGenerationChecks));
    }
    if (g.data) {
        out.push(lens(`$(database) ${dataHint(g.data)}`, Commands.showGenerationChecks, 'How to run it: see the Data section of the checks page'));
    }
    return out;
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
