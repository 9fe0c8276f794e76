// Numbers as a person reads them: floats to 4 significant digits, integers unchanged. The same rule as
// server/tune/rounding.py (both are checked on tests/tune/shared_cases.json), used by the editor's
// messages (notification, CodeLens, code action) and the dashboard's Tune section. No `vscode` import,
// no DOM: the extension and the webview bundle both import it.

export const SIG_DIGITS = 4;

/** `value` rounded to `digits` significant digits when it is a finite non-integer number; anything else as is. */
export function roundSig<T>(value: T, digits = SIG_DIGITS): T {
    if (typeof value !== 'number' || !Number.isFinite(value) || Number.isInteger(value)) {
        return value;
    }
    return Number(value.toExponential(digits - 1)) as T;
}

/**
 * `value` for a person: numbers to `digits` significant digits, plain from 1e-4 up to (not including)
 * 1e4 (`0.05234`, `256`, `1234`), else a short exponent (`1.235e4`, `1e-5`); no trailing zeros.
 * Integers are shown whole; null and undefined as `—`; strings as they are; anything else as JSON.
 */
export function formatSig(value: unknown, digits = SIG_DIGITS): string {
    if (value === null || value === undefined) {
        return '—';
    }
    if (typeof value === 'string') {
        return value;
    }
    if (typeof value !== 'number') {
        const json: string | undefined = JSON.stringify(value);  // true, [1, 2]; undefined for a function
        return json ?? '—';
    }
    if (Number.isNaN(value)) {
        return 'nan';
    }
    if (!Number.isFinite(value)) {
        return value > 0 ? 'inf' : '-inf';
    }
    if (Number.isInteger(value) && Math.abs(value) < 1e21) {
        return String(value);
    }
    const [mantissa, expText] = value.toExponential(digits - 1).split('e');
    const exponent = Number(expText);
    if (exponent >= -4 && exponent < digits) {
        return trim(value.toFixed(digits - 1 - exponent));
    }
    return `${trim(mantissa)}e${exponent}`;
}

/** `hidden=256, lr=0.05234`: parameters by name, each by formatSig. */
export function formatParams(params: Record<string, unknown>, digits = SIG_DIGITS): string {
    return Object.keys(params).sort().map(k => `${k}=${formatSig(params[k], digits)}`).join(', ');
}

/** `"0.05230"` -> `"0.0523"`, `"256.0"` -> `"256"` (digits after the point only). */
function trim(text: string): string {
    return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
}
