// How a diagnosis and a fix's speed-up are said, the same in the editor's notifications and in the dashboard's
// Diagnosis section: the step-time parts in their order with their names, shares as percentages, the
// summary line of a report and the line of a measured fix. No `vscode` import and no DOM: the extension, the
// dashboard page and the unit tests all load it.
import type { DiagnosisReport, SpeedupResult, StepBreakdown } from '../protocol';

export type PartKey = keyof StepBreakdown;

/** The breakdown's parts in the order the chart stacks them (the step as it runs: data, model, update, the rest). */
export const PART_ORDER: readonly PartKey[] = [
    'data_wait', 'forward', 'backward', 'optimizer', 'host_sync', 'copies', 'communication', 'idle',
];

export const PART_LABELS: Record<PartKey, string> = {
    data_wait: 'data wait',
    forward: 'forward',
    backward: 'backward',
    optimizer: 'optimizer',
    host_sync: 'host syncs',
    copies: 'host↔device copies',
    communication: 'communication',
    idle: 'idle',
};

/** The parts that are the model's own work: a summary names the largest of the others (what a fix can remove). */
const MODEL_WORK = new Set<PartKey>(['forward', 'backward']);

/** A share (0..1) as `31 %`, `4.2 %` below 10 %, `<0.1 %` for a tiny non-zero one, `—` when unknown. */
export function fmtShare(share: number | null | undefined): string {
    if (share === null || share === undefined || !Number.isFinite(share)) {
        return '—';
    }
    const pct = 100 * share;
    if (pct === 0) {
        return '0 %';
    }
    if (pct > 0 && pct < 0.1) {
        return '<0.1 %';
    }
    return `${pct >= 10 ? pct.toFixed(0) : pct.toFixed(1)} %`;
}

/** Milliseconds with about 3 significant digits (`0.512`, `4.2`, `42`, `1234`); `—` when unknown. */
export function fmtMsShort(ms: number | null | undefined): string {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) {
        return '—';
    }
    if (ms >= 100) {
        return ms.toFixed(0);
    }
    return Number(ms.toPrecision(ms >= 10 ? 2 : 3)).toString();
}

/** A ratio as `1.84×`. */
export function fmtTimes(x: number): string {
    return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`;
}

/** Each part's milliseconds and its share of the parts' sum (the measured step), in PART_ORDER. */
export function partShares(b: StepBreakdown): { part: PartKey; label: string; ms: number; share: number }[] {
    const ms = PART_ORDER.map(p => (Number.isFinite(b[p]) && b[p] > 0 ? b[p] : 0));
    const total = ms.reduce((a, x) => a + x, 0);
    return PART_ORDER.map((part, i) => ({ part, label: PART_LABELS[part], ms: ms[i], share: total > 0 ? ms[i] / total : 0 }));
}

/**
 * The notification after a diagnosis: `digits.py: 42 ms/step; data wait 31 %; 2 findings promoted`.
 * The part named is the largest one that is not the model's forward or backward (those are the work itself);
 * none when it is under 1 % of the step.
 */
export function summaryLine(file: string, r: Pick<DiagnosisReport, 'step_ms' | 'breakdown' | 'findings'>): string {
    const bits = [`${file}: ${fmtMsShort(r.step_ms)} ms/step`];
    const other = partShares(r.breakdown).filter(p => !MODEL_WORK.has(p.part)).sort((a, b) => b.share - a.share)[0];
    if (other && other.share >= 0.01) {
        bits.push(`${other.label} ${fmtShare(other.share)}`);
    }
    const promoted = r.findings.filter(f => f.promoted).length;
    const hints = r.findings.length - promoted;
    bits.push(`${promoted} finding${promoted === 1 ? '' : 's'} promoted`
        + (hints > 0 ? `, ${hints} hint${hints === 1 ? '' : 's'}` : ''));
    return bits.join('; ');
}

/** `1.61–2.05×` with the confidence: `96.9 % CI 1.61–2.05×`. */
export function fmtInterval(r: Pick<SpeedupResult, 'ci_low' | 'ci_high' | 'confidence'>): string {
    const level = Number((100 * r.confidence).toFixed(1));
    return `${level} % CI ${fmtTimes(r.ci_low).slice(0, -1)}–${fmtTimes(r.ci_high)}`;
}

/**
 * A measured fix in one line: `DD110 fix: 1.84× faster (96.9 % CI 1.61–2.05×, 6 pairs)`; `1.25× slower`
 * when the fixed copy is slower; `no measurable change (1.02×, …)` when the interval holds 1.
 */
export function speedupLine(r: Pick<SpeedupResult, 'code' | 'speedup' | 'ci_low' | 'ci_high' | 'confidence' | 'pairs' | 'verdict'>): string {
    const detail = `${fmtInterval(r)}, ${r.pairs} pair${r.pairs === 1 ? '' : 's'}`;
    if (r.verdict === 'no measurable change' || !(r.speedup > 0)) {
        return `${r.code} fix: no measurable change (${fmtTimes(r.speedup)}, ${detail})`;
    }
    const how = r.speedup >= 1 ? `${fmtTimes(r.speedup)} faster` : `${fmtTimes(1 / r.speedup)} slower`;
    return `${r.code} fix: ${how} (${detail})`;
}
