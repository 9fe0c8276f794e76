// The Compression view's formatting (no DOM): ratios, speed-ups, accuracy points, latencies, sizes and
// counts as the table and the summary line say them, and the two sentences (what runs now, the overall result).
import type { Ratio } from './compressQueries';
import type { Latency, Live, Summary } from './compressTypes';

/** `3.91×`, `—` when unknown. */
export function fmtRatio(x: number | null): string {
    if (x === null) {
        return '—';
    }
    return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`;
}

/** A speed-up (original latency / this latency) as `2.10× faster` or, below 1, `3.00× slower`. */
export function fmtSpeed(x: number | null): string {
    if (x === null) {
        return '—';
    }
    return x >= 1 || x <= 0 ? `${fmtRatio(x)} faster` : `${fmtRatio(1 / x)} slower`;
}

/** `+0.42 pts` / `−1.10 pts`. */
export function fmtPoints(x: number | null): string {
    if (x === null) {
        return '—';
    }
    const r = Math.round(x * 100) / 100;
    return `${r < 0 ? '−' : '+'}${Math.abs(r).toFixed(2)} pts`;
}

/** Milliseconds with 3 significant digits (`0.0512`, `1.23`, `45.6`, `1234`). */
export function fmtMs(x: number | null | undefined): string {
    if (x === null || x === undefined) {
        return '—';
    }
    return x >= 1000 ? x.toFixed(0) : Number(x.toPrecision(3)).toString();
}

/** `p50 / p95` in ms. */
export function fmtLatency(l: Latency | null): string {
    return l ? `${fmtMs(l.p50)} / ${fmtMs(l.p95)}` : '—';
}

export function fmtSizeMb(x: number | null): string {
    if (x === null) {
        return '—';
    }
    return x >= 100 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3);
}

/** An evaluate() value as a percentage when it looks like a fraction, else as it is. */
export function fmtAccuracy(x: number | null): string {
    if (x === null) {
        return '—';
    }
    return x >= 0 && x <= 1 ? `${(100 * x).toFixed(2)} %` : Number(x.toPrecision(4)).toString();
}

/** `1,234,567`. */
export function fmtCount(x: number | null): string {
    return x === null ? '—' : Math.round(x).toLocaleString('en-US');
}

/** `3.91× smaller · 2.10× faster · −0.42 pts` for a row against the original (`original` for itself). */
export function fmtVsOriginal(r: Ratio): string {
    if (r.step === 'original') {
        return 'baseline';
    }
    const bits: string[] = [];
    if (r.size !== null) {
        bits.push(`${fmtRatio(r.size)} smaller`);
    }
    if (r.speedupB1 !== null) {
        bits.push(`${fmtSpeed(r.speedupB1)}${r.paired ? ' (paired)' : ''}`);
    }
    if (r.accuracyPoints !== null) {
        bits.push(fmtPoints(r.accuracyPoints));
    }
    return bits.length ? bits.join(' · ') : '—';
}

/** What the pipeline does now, in a line: `prune: fine-tuning after step 1`, plus its numbers. */
export function describeLive(l: Live): string {
    const nums = Object.entries(l.numbers).map(([k, v]) => `${k} ${Number(v.toPrecision(4))}`);
    return `${l.step}: ${l.phase || 'running'}${nums.length ? ` (${nums.join(', ')})` : ''}`;
}

/** The overall line: `3.91× smaller, 2.10× faster at batch 1 (1.50× at 32), accuracy −0.42 points`. */
export function describeSummary(s: Summary): string {
    const bits: string[] = [];
    if (s.sizeRatio !== null) {
        bits.push(`${fmtRatio(s.sizeRatio)} smaller`);
    }
    if (s.speedupB1 !== null) {
        const t = s.threadsB1;
        const on = t ? `on ${t.compressed} thread${t.compressed === 1 ? '' : 's'} against ${t.original}` : '';
        const inner = s.speedupB32 !== null ? `${fmtSpeed(s.speedupB32)} at 32${on ? `; batch 1 ${on}` : ''}` : on;
        bits.push(`${fmtSpeed(s.speedupB1)} at batch 1${inner ? ` (${inner})` : ''}`);
    }
    if (s.accuracyDropPoints !== null) {
        bits.push(`accuracy ${fmtPoints(-s.accuracyDropPoints).replace(' pts', ' points')}`);
    }
    return bits.join(', ');
}
