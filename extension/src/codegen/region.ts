// Where a proposed program goes in a document, and how it is framed and indented there. No `vscode` import.

/** A document change, as `TextDocumentContentChangeEvent` gives it. */
export interface TextChange {
    offset: number;
    removed: number;
    inserted: number;
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

/**
 * Where a proposed program goes after someone's change to the document it is proposed for (the
 * document itself holds nothing of it until Accept). A change before the place (an insertion right
 * at it included: typed text stays above the program) moves it; a change after it leaves it; a
 * change that replaces text around it loses it (undefined): there is no right place any more.
 */
export function shiftAnchor(anchor: number, change: TextChange): number | undefined {
    const changeEnd = change.offset + change.removed;
    if (changeEnd <= anchor) {
        return anchor + change.inserted - change.removed;
    }
    if (change.offset >= anchor) {
        return anchor;
    }
    return undefined;
}

/** The proposed document: `original` with `program` (framing included) inserted at `anchor`. */
export function composeProposal(original: string, anchor: number, program: string): string {
    return original.slice(0, anchor) + program + original.slice(anchor);
}
