// Where a streamed program sits in a document, and how to update it. No `vscode` import.

/** The inserted text: `prefix + body + suffix`, starting at `start` (document offsets). */
export interface Region {
    start: number;
    length: number;
}

/** A document change, as `TextDocumentContentChangeEvent` gives it. */
export interface TextChange {
    offset: number;
    removed: number;
    inserted: number;
}

/**
 * The region after someone else's change. A change before it moves it; one after it leaves it
 * alone; one that overlaps it grows or shrinks it to cover the edited text (`touched`).
 */
export function shiftRegion(region: Region, change: TextChange): { region: Region; touched: boolean } {
    const end = region.start + region.length;
    const delta = change.inserted - change.removed;
    const changeEnd = change.offset + change.removed;
    if (changeEnd <= region.start && !(change.removed === 0 && change.offset === region.start && region.length === 0)) {
        // entirely before (an insertion right at the start counts as before)
        return { region: { start: region.start + delta, length: region.length }, touched: false };
    }
    if (change.offset >= end) {
        return { region, touched: false };
    }
    const start = Math.min(region.start, change.offset);
    const newEnd = Math.max(end, changeEnd) + delta;
    return { region: { start, length: Math.max(0, newEnd - start) }, touched: true };
}

/** Indents every non-empty line; stable under appends (a longer text gives a longer prefix). */
export function indentLines(text: string, indent: string): string {
    if (!indent) {
        return text;
    }
    return text
        .split('\n')
        .map((line) => (line.length > 0 ? indent + line : line))
        .join('\n');
}

/** The edit that turns `oldBody` into `newBody`: an append at the end when it can, else a replacement. */
export type BodyEdit = { kind: 'none' } | { kind: 'append'; at: number; text: string } | { kind: 'replace'; text: string };

export function planBodyEdit(oldBody: string, newBody: string): BodyEdit {
    if (oldBody === newBody) {
        return { kind: 'none' };
    }
    if (newBody.startsWith(oldBody)) {
        return { kind: 'append', at: oldBody.length, text: newBody.slice(oldBody.length) };
    }
    return { kind: 'replace', text: newBody };
}

/**
 * How a program is placed at a cursor: a newline before it when the line has text before the
 * cursor, one after it when text follows the cursor, so it never fuses with existing code.
 */
export function cursorFraming(lineBefore: string, lineAfter: string): { prefix: string; suffix: string } {
    return {
        prefix: lineBefore.trim() !== '' ? '\n' : '',
        suffix: lineAfter.trim() !== '' ? '\n' : '',
    };
}

/** The program as the body's final text: one line break at its end, from the body or from `suffix`. */
export function finalBody(code: string, suffix: string): string {
    const trimmed = code.replace(/\s+$/, '');
    return suffix.endsWith('\n') || trimmed === '' ? trimmed : trimmed + '\n';
}
