// One generated program proposed for a document: streamed into a read-only proposal (the document
// with the program in place), shown as a diff; the document itself is edited once, on Accept.
import * as path from 'path';
import { EndOfLine, Position, TextDocument, TextDocumentChangeEvent, Uri, workspace, WorkspaceEdit } from 'vscode';
import { GenerateResult } from '../protocol';
import { DataNeed } from './datahint';
import { renameRunLines } from './docstring';
import { ProposalDocuments, proposalUri } from './proposals';
import { composeProposal, indentLines, shiftAnchor } from './region';
import { Throttle } from './throttle';

export type PendingState = 'streaming' | 'review' | 'closed';

export interface InsertionTarget {
    /** The document the program is proposed for; undefined for a new file. */
    document: TextDocument | undefined;
    offset: number;
    /** Text around the program so it never fuses with neighbouring code (see region.ts). */
    prefix: string;
    suffix: string;
    /** Every non-empty line of the program is indented with this. */
    indent: string;
}

/** What Accept did: applied, or why not (the place was edited away, the document closed, the edit refused). */
export type ApplyOutcome = 'applied' | 'lost' | 'closed' | 'failed';

/** How often a streaming proposal is redrawn at most. */
const REDRAW_MS = 100;

let nextId = 1;

export class PendingGeneration {
    readonly id = nextId++;
    readonly document: TextDocument | undefined;
    /** The read-only document that shows the proposed text. */
    readonly proposalUri: Uri;
    state: PendingState = 'streaming';
    result: GenerateResult | undefined;
    summary: string | undefined;
    data: DataNeed | undefined;
    /** Where the program goes in `document`; undefined once the text around that place was replaced. */
    anchor: number | undefined;
    /** The program (unindented), as far as it has streamed. */
    private body = '';
    private readonly target: InsertionTarget;
    private readonly redraw: Throttle;

    constructor(
        target: InsertionTarget,
        readonly prompt: string,
        private readonly proposals: ProposalDocuments,
    ) {
        this.document = target.document;
        this.anchor = target.offset;
        this.target = { ...target, prefix: this.eol(target.prefix), suffix: this.eol(target.suffix) };
        this.proposalUri = proposalUri(this.id, this.displayName);
        this.redraw = new Throttle(() => this.publish(), REDRAW_MS);
        this.publish();
    }

    /** The document's URI, or the proposal's for a new file: what Accept/Reject by URI refer to. */
    get uri(): Uri {
        return this.document?.uri ?? this.proposalUri;
    }

    /** The file name the user sees: the document's, or "new program.py". */
    get displayName(): string {
        if (!this.document) {
            return 'new program.py';
        }
        const base = path.posix.basename(this.document.uri.path) || 'document';
        return this.document.languageId === 'python' && !/\.pyi?$/.test(base) ? `${base}.py` : base;
    }

    /**
     * The name the docstring's run lines should say: the real file's basename; none for an untitled
     * document or a new file (they keep the suggested name, which Save As proposes) or a notebook cell.
     */
    get runName(): string | undefined {
        const doc = this.document;
        if (!doc || doc.isUntitled || doc.uri.scheme === 'vscode-notebook-cell') {
            return undefined;
        }
        return path.posix.basename(doc.uri.path) || undefined;
    }

    /** Text with the document's line ends (VS Code turns inserted '\n' into '\r\n' in a CRLF document). */
    private eol(text: string): string {
        return this.document?.eol === EndOfLine.CRLF ? text.replace(/\r?\n/g, '\r\n') : text;
    }

    /** Sets the program streamed so far (unindented); `final` shows it at once, else at most every REDRAW_MS. */
    setBody(program: string, final = false): void {
        const name = this.runName;
        this.body = name ? renameRunLines(program, final ? this.result?.filename : undefined, name) : program;
        if (final) {
            this.redraw.flush();
        } else {
            this.redraw.request();
        }
    }

    /** The program as it goes into the document: indented, in the document's line ends. */
    get program(): string {
        return this.eol(indentLines(this.body, this.target.indent));
    }

    /** The text Accept inserts: the program with its framing. */
    get insertion(): string {
        return this.target.prefix + this.program + this.target.suffix;
    }

    /** The whole proposed document: the document's current text with the program in place. */
    get proposedText(): string {
        if (!this.document) {
            return this.program;
        }
        const original = this.document.getText();
        return this.anchor === undefined ? original : composeProposal(original, this.anchor, this.insertion);
    }

    /** Where the program starts in the proposal (for its lenses). */
    get proposalStart(): number {
        return this.document && this.anchor !== undefined ? this.anchor + this.target.prefix.length : 0;
    }

    /** Where the program would go in the document (the lenses' line), or undefined when that place is gone. */
    get anchorPosition(): Position | undefined {
        return this.document && this.anchor !== undefined ? this.document.positionAt(this.anchor) : undefined;
    }

    private publish(): void {
        if (this.state !== 'closed') {
            this.proposals.set(this.proposalUri, this.proposedText);
        }
    }

    /** Waits until an open proposal document shows the current proposal. */
    settled(): Promise<void> {
        return this.proposals.settled(this.proposalUri, this.proposedText);
    }

    /** Someone's change to the document: the place moves with the text (or is lost), the proposal follows. */
    onDocumentChange(e: TextDocumentChangeEvent): boolean {
        if (e.document !== this.document || this.state === 'closed' || e.contentChanges.length === 0) {
            return false;
        }
        // Changes in one event are given against the document before the event, last first is safe.
        const changes = [...e.contentChanges].sort((a, b) => b.rangeOffset - a.rangeOffset);
        for (const c of changes) {
            if (this.anchor !== undefined) {
                this.anchor = shiftAnchor(this.anchor, { offset: c.rangeOffset, removed: c.rangeLength, inserted: c.text.length });
            }
        }
        this.redraw.request();
        return true;
    }

    /** Accept: ONE edit inserts the program into the document (unsaved, as any edit). */
    async apply(): Promise<ApplyOutcome> {
        const doc = this.document;
        if (!doc || doc.isClosed) {
            return 'closed';
        }
        if (this.anchor === undefined) {
            return 'lost';
        }
        const e = new WorkspaceEdit();
        e.insert(doc.uri, doc.positionAt(this.anchor), this.insertion);
        return (await workspace.applyEdit(e)) ? 'applied' : 'failed';
    }

    /** Ends the proposal: nothing more is drawn, and its document text is forgotten. */
    close(): void {
        this.state = 'closed';
        this.redraw.cancel();
        this.proposals.delete(this.proposalUri);
    }
}
