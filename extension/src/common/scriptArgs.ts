// What the script commands (Tune, Train) share in their arguments: which script (a path, a URI string or
// a vscode.Uri), the script's own arguments, and the test flags. No `vscode` import: unit tests load this.

export interface ScriptRef {
    /** The script: a file path or a URI string. */
    path?: string;
    uri?: string;
    /** Arguments for the script itself. */
    args?: string[];
    /** No dashboard, no notifications (tests). */
    quiet?: boolean;
    /** Resolve when the job ends (tests), not when it starts. */
    wait?: boolean;
}

export const text = (x: unknown): string | undefined => (typeof x === 'string' && x.trim() ? x.trim() : undefined);

/**
 * The shared part of a command argument: a URI string or path, a vscode.Uri (anything with a scheme and
 * toString), or an object whose path/uri/args/quiet/wait are read; `rest` is the object for the
 * command's own fields (undefined for a string or a Uri).
 */
export function parseScriptRef(arg: unknown): { ref: ScriptRef; rest?: Record<string, unknown> } {
    if (typeof arg === 'string') {
        return { ref: /^[a-z][\w+.-]+:/i.test(arg) && !/^[a-z]:[\\/]/i.test(arg) ? { uri: arg } : { path: arg } };
    }
    if (!arg || typeof arg !== 'object') {
        return { ref: {} };
    }
    const a = arg as Record<string, unknown>;
    if (typeof a.scheme === 'string' && 'fsPath' in a) {
        return { ref: { uri: (a as { toString(): string }).toString() } };
    }
    const ref: ScriptRef = { path: text(a.path) };
    if (typeof a.uri === 'string') {
        ref.uri = text(a.uri);
    } else if (a.uri && typeof a.uri === 'object' && 'scheme' in a.uri) {
        ref.uri = (a.uri as { toString(): string }).toString();
    }
    if (Array.isArray(a.args) && a.args.every(x => typeof x === 'string')) {
        ref.args = a.args;
    }
    if (a.quiet === true) {
        ref.quiet = true;
    }
    if (a.wait === true) {
        ref.wait = true;
    }
    return { ref, rest: a };
}

/** `out` without its undefined fields (the command arguments tests compare). */
export function withoutUndefined<T extends object>(out: T): T {
    for (const k of Object.keys(out) as (keyof T)[]) {
        if (out[k] === undefined) {
            delete out[k];
        }
    }
    return out;
}
