// How the webview's models read a value off the wire: a /stream message is JSON from another process, so
// each value is checked as it is read (a finite number, a string, an object) and anything else reads as
// null. model.ts, tune.ts and compress.ts share these instead of each keeping its own copy.

/** `x` when it is a finite number, else null. */
export const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** `x` when it is a string (the empty one included), else null. */
export const str = (x: unknown): string | null => (typeof x === 'string' ? x : null);

/** `x` when it is a string other than the empty one, else null. */
export const text = (x: unknown): string | null => (typeof x === 'string' && x !== '' ? x : null);

/** Whether `x` is a JSON object (not null, not an array). */
export const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
