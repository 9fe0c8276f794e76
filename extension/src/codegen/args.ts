// What the generate commands accept from callers other than the palette (tests, other extensions,
// keybindings): a prompt string, or an object. No `vscode` import.

export interface GenerateArgs {
    /** Skips the prompt input when given. */
    prompt?: string;
    /** Propose for this document (a URI string) instead of the active editor. */
    uri?: string;
    /** Insert at this position (0-based) instead of the cursor. */
    line?: number;
    character?: number;
    /** Return as soon as the program is proposed, without showing the summary notification. */
    quiet?: boolean;
}

export function parseGenerateArgs(arg: unknown): GenerateArgs {
    if (typeof arg === 'string') {
        return { prompt: arg };
    }
    if (!arg || typeof arg !== 'object') {
        return {};
    }
    const a = arg as Record<string, unknown>;
    const out: GenerateArgs = {};
    if (typeof a.prompt === 'string' && a.prompt.trim()) {
        out.prompt = a.prompt.trim();
    }
    if (typeof a.uri === 'string') {
        out.uri = a.uri;
    } else if (a.uri && typeof a.uri === 'object' && 'scheme' in a.uri) {
        // a vscode.Uri (its toString() is the URI)
        const s = (a.uri as { toString(): string }).toString();
        if (s.includes(':')) {
            out.uri = s;
        }
    }
    if (Number.isInteger(a.line) && (a.line as number) >= 0) {
        out.line = a.line as number;
        out.character = Number.isInteger(a.character) && (a.character as number) >= 0 ? (a.character as number) : 0;
    }
    if (a.quiet === true) {
        out.quiet = true;
    }
    return out;
}

/** What the generate commands resolve to (the integration tests read it). */
export interface GenerateOutcome {
    /** `no-program`: the builtin cannot build the request as asked; `summary` says what is missing. */
    state: 'review' | 'accepted' | 'cancelled' | 'failed' | 'no-prompt' | 'no-program';
    uri?: string;
    /** The proposed program (without its framing), as Accept inserts it into the document. */
    text?: string;
    summary?: string;
    verified?: boolean;
    error?: string;
}
