// How the dashboard says a number (no DOM): about 3 significant digits, bytes and byte rates in binary
// units, percentages, seconds as ms/s/min, a throughput window and how long ago a time was; `—` for
// a value that is unknown.

const DASH = '—';

/** `10 s`, `2.3 s`: a throughput window as server/throughput.py's `window_text` says it. */
export function fmtWindow(seconds: number): string {
    return seconds >= 9.95 ? `${seconds.toFixed(0)} s` : `${seconds.toFixed(1)} s`;
}
/** A number with about 3 significant digits: 0.00123, 12.3, 1234, 1.23e+9 for huge ones. */
export function fmtNum(x: number | null | undefined, digits = 3): string {
    if (x === null || x === undefined || !Number.isFinite(x)) {
        return DASH;
    }
    if (x === 0) {
        return '0';
    }
    const a = Math.abs(x);
    if (a >= 1e6 || a < 1e-4) {
        return x.toExponential(digits - 1);
    }
    if (a >= 10 ** digits) {
        return Math.round(x).toString();
    }
    return Number(x.toPrecision(digits)).toString();
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function fmtBytes(x: number | null | undefined): string {
    if (x === null || x === undefined || !Number.isFinite(x)) {
        return DASH;
    }
    let v = Math.abs(x);
    let u = 0;
    while (v >= 1024 && u < BYTE_UNITS.length - 1) {
        v /= 1024;
        u++;
    }
    const s = u === 0 ? Math.round(v).toString() : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
    return `${x < 0 ? '-' : ''}${s} ${BYTE_UNITS[u]}`;
}

export const fmtMib = (x: number | null | undefined): string => (x === null || x === undefined ? DASH : fmtBytes(x * 1024 * 1024));

export const fmtRate = (bytesPerS: number | null | undefined): string =>
    bytesPerS === null || bytesPerS === undefined || !Number.isFinite(bytesPerS) ? DASH : `${fmtBytes(bytesPerS)}/s`;

/** Seconds as ms/s/min: 0.0123 -> "12.3 ms", 4.2 -> "4.2 s", 125 -> "2 min 5 s". */
export function fmtSeconds(s: number | null | undefined): string {
    if (s === null || s === undefined || !Number.isFinite(s)) {
        return DASH;
    }
    if (Math.abs(s) < 1) {
        return `${fmtNum(s * 1000)} ms`;
    }
    if (Math.abs(s) < 60) {
        return `${fmtNum(s)} s`;
    }
    const m = Math.floor(s / 60);
    return `${m} min ${Math.round(s - m * 60)} s`;
}

export const fmtPct = (x: number | null | undefined): string =>
    x === null || x === undefined || !Number.isFinite(x) ? DASH : `${x.toFixed(x < 10 ? 1 : 0)}%`;

/** How long ago `t` (seconds since the epoch) was, relative to `now` (the same unit). */
export function fmtAgo(t: number, now: number): string {
    const d = Math.max(0, now - t);
    if (d < 2) {
        return 'now';
    }
    if (d < 60) {
        return `${Math.round(d)} s ago`;
    }
    if (d < 3600) {
        return `${Math.round(d / 60)} min ago`;
    }
    return `${Math.round(d / 3600)} h ago`;
}
