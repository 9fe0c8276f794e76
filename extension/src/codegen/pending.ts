// One generated program in a document: streamed in, then kept (accept) or removed (reject).
import { EndOfLine, Position, Range, TextDocument, TextDocumentChangeEvent, Uri, workspace, WorkspaceEdit } from 'vscode';
import { GenerateResult } from '../protocol';
import { indentLines, planBodyEdit, Region, shiftRegion } from './region';

export type PendingState = 'streaming' | 'review' | 'closed';

export interface InsertionTarget {
    document: TextDocument;
    offset: number;
    /** Text around the program so it never fuses with neighbouring code (see region.ts). */
    prefix: string;
    suffix: string;
    /** Every non-empty line of the program is indented with this. */
    indent: string;
}

let nextId = 1;

export class PendingGeneration {
    readonly id = nextId++;
    readonly uri: Uri;
    state: PendingState = 'streaming';
    result: GenerateResult | undefined;
    summary: string | undefined;
    /** The user edited inside the inserted text. */
    touched = false;
    private region: Region;
    /** Our own edits in flight: document changes meanwhile are ours. */
    private applying = 0;
    private queue: Promise<void> = Promise.resolve();
    private wanted = '';
    private flushing = false;

    private readonly target: InsertionTarget;

    constructor(
        readonly document: TextDocument,
        target: InsertionTarget,
        readonly prompt: string,
    ) {
        this.uri = document.uri;
        this.region = { start: target.offset, length: 0 };
        this.target = { ...target, prefix: this.eol(target.prefix), suffix: this.eol(target.suffix) };
    }

    /** Text with the document's line ends (VS Code turns inserted '\n' into '\r\n' in a CRLF document). */
    private eol(text: string): string {
        return this.document.eol === EndOfLine.CRLF ? text.replace(/\r?\n/g, '\r\n') : text;
    }

    /** The document range the program (with its framing) occupies now. */
    get range(): Range {
        return new Range(this.document.positionAt(this.region.start), this.document.positionAt(this.region.start + this.region.length));
    }

    /** The range of the program itself, without the framing newlines. */
    get bodyRange(): Range {
        const start = this.region.start + this.target.prefix.length;
        return new Range(this.document.positionAt(start), this.document.positionAt(start + this.bodyLength));
    }

    private get bodyLength(): number {
        return Math.max(0, this.region.length - this.target.prefix.length - this.target.suffix.length);
    }

    get text(): string {
        return this.document.getText(this.range);
    }

    /** Inserts the (empty) framing; false when the document cannot be edited. */
    async open(): Promise<boolean> {
        const framing = this.target.prefix + this.target.suffix;
        if (!framing) {
            return true;
        }
        const ok = await this.edit((e) => e.insert(this.uri, this.document.positionAt(this.region.start), framing));
        if (ok) {
            this.region = { start: this.region.start, length: framing.length };
        }
        return ok;
    }

    /** Sets the program streamed so far (unindented); edits are serialised and coalesced. */
    setBody(program: string): Promise<void> {
        this.wanted = this.eol(indentLines(program, this.target.indent));
        if (!this.flushing) {
            this.flushing = true;
            this.queue = this.queue.then(() => this.flush());
        }
        return this.queue;
    }

    /** Waits for the edits queued so far. */
    settled(): Promise<void> {
        return this.queue;
    }

    private async flush(): Promise<void> {
        try {
            // The document is the truth: if the user typed inside the program, the stream overrides it.
            let lastTried: string | undefined;
            while (this.state !== 'closed' && this.wanted !== this.document.getText(this.bodyRange)) {
                const want = this.wanted;
                if (want === lastTried) {
                    // the edit went through but the document does not read back as asked: stop, never spin
                    break;
                }
                lastTried = want;
                const range = this.bodyRange;
                const plan = planBodyEdit(this.document.getText(range), want);
                const bodyStart = this.document.offsetAt(range.start);
                const oldLength = this.bodyLength;
                let ok = true;
                if (plan.kind === 'append') {
                    ok = await this.edit((e) => e.insert(this.uri, this.document.positionAt(bodyStart + plan.at), plan.text));
                } else if (plan.kind === 'replace') {
                    ok = await this.edit((e) => e.replace(this.uri, range, plan.text));
                }
                if (!ok) {
                    throw new Error(`could not edit ${this.uri.toString(true)}`);
                }
                this.region = { start: this.region.start, length: this.region.length - oldLength + want.length };
            }
        } finally {
            this.flushing = false;
        }
    }

    /** Someone's change to the document: keeps the region in place. Our own edits are accounted for in flush. */
    onDocumentChange(e: TextDocumentChangeEvent): boolean {
        if (this.applying > 0 || e.document !== this.document || this.state === 'closed') {
            return false;
        }
        // Changes in one event are given against the document before the event, last first is safe.
        const changes = [...e.contentChanges].sort((a, b) => b.rangeOffset - a.rangeOffset);
        for (const c of changes) {
            const r = shiftRegion(this.region, { offset: c.rangeOffset, removed: c.rangeLength, inserted: c.text.length });
            this.region = r.region;
            this.touched ||= r.touched;
        }
        return true;
    }

    /** Removes everything this generation inserted; the document is as it was before. */
    async remove(): Promise<boolean> {
        this.state = 'closed';
        await this.queue.catch(() => undefined);
        if (this.document.isClosed || this.region.length === 0) {
            return true;
        }
        const range = this.range;
        const ok = await this.edit((e) => e.delete(this.uri, range));
        if (ok) {
            this.region = { start: this.region.start, length: 0 };
        }
        return ok;
    }

    /** The start of the program's first line (where the review lens goes). */
    get firstLine(): Position {
        return this.bodyRange.start;
    }

    private async edit(build: (e: WorkspaceEdit) => void): Promise<boolean> {
        if (this.document.isClosed) {
            return false;
        }
        const e = new WorkspaceEdit();
        build(e);
        this.applying++;
        try {
            return await workspace.applyEdit(e);
        } finally {
            this.applying--;
        }
    }
}
