// The prompt history: most recent first, no duplicates, bounded. No `vscode` import.

export const HISTORY_LIMIT = 20;

/** `history` with `prompt` moved (or added) to the front, at most `limit` entries. */
export function pushHistory(history: readonly string[], prompt: string, limit = HISTORY_LIMIT): string[] {
    const p = prompt.trim();
    if (!p) {
        return history.slice(0, limit);
    }
    return [p, ...history.filter((h) => h !== p)].slice(0, limit);
}

/** Reads a stored value defensively: anything but an array of strings is an empty history. */
export function readHistory(stored: unknown): string[] {
    return Array.isArray(stored) ? stored.filter((x): x is string => typeof x === 'string' && x.trim() !== '') : [];
}
