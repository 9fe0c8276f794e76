// The Compression view's queries (no DOM): what the view shows of a model, read from the state compress.ts
// builds: the models by recency, the rows in pipeline order, each row against the original (the report's
// paired speed-up on the final row), the overall result and the grouped bars relative to the original.
import { Vocabularies } from '../src/protocol';
import type { CompressedModel, CompressState, StepRow, Summary } from './compressTypes';

/** The report's rows in pipeline order; other step names go after them. */
export const STEP_ORDER = Vocabularies.compressSteps;

/** Models, the one heard from most recently first. */
export function modelsByRecency(state: CompressState): CompressedModel[] {
    return [...state.models.values()].sort((a, b) => b.lastT - a.lastT);
}

/** The model the view shows: the chosen one (by run id) if known, else the newest. */
export function currentModel(state: CompressState, chosen: string | null): CompressedModel | null {
    if (chosen && state.models.has(chosen)) {
        return state.models.get(chosen)!;
    }
    return modelsByRecency(state)[0] ?? null;
}

const order = (step: string): number => {
    const i = (STEP_ORDER as readonly string[]).indexOf(step);
    return i < 0 ? STEP_ORDER.length : i;
};

/** The latest run's rows in pipeline order. */
export function stepsOf(m: CompressedModel): StepRow[] {
    return [...m.steps.values()].sort((a, b) => order(a.step) - order(b.step) || a.t - b.t);
}

/** A row against the original: how many times smaller / faster, accuracy change in points. */
export interface Ratio {
    step: string;
    /** original size / this size: 4 means 4× smaller. */
    size: number | null;
    params: number | null;
    /** original p50 / this p50 at batch 1 and 32: 2 means 2× faster (the report's figures on the final row). */
    speedupB1: number | null;
    speedupB32: number | null;
    /** (this − original) accuracy, in points (100 × the fraction). */
    accuracyPoints: number | null;
    /**
     * The speed-ups are the report's summary figures (the final row once the report came): the original and
     * the compressed model timed in alternating rounds, each at its fastest thread count. The rows' own p50
     * columns were measured minutes apart, so their ratio is not shown beside it: one figure, as the summary.
     */
    paired: boolean;
}

const div = (a: number | null | undefined, b: number | null | undefined): number | null =>
    a !== null && a !== undefined && b !== null && b !== undefined && b > 0 && a >= 0 ? a / b : null;

/**
 * Each row against the original row (all null for every row when the original was not measured). Once the
 * report came, the final row's speed-ups are the report's (see `Ratio.paired`), so the table and the
 * summary line show one figure.
 */
export function ratios(m: CompressedModel): Ratio[] {
    const o = m.steps.get('original');
    const rows = stepsOf(m);
    const final = m.report && rows.length > 1 ? rows.at(-1) : undefined;
    const summary = m.report?.summary;
    return rows.map(r => {
        const paired = r === final && summary !== undefined && (summary.speedupB1 !== null || summary.speedupB32 !== null);
        return {
            step: r.step,
            size: div(o?.sizeMb, r.sizeMb),
            params: div(o?.params, r.params),
            speedupB1: paired ? summary.speedupB1 : div(o?.b1?.p50, r.b1?.p50),
            speedupB32: paired ? summary.speedupB32 : div(o?.b32?.p50, r.b32?.p50),
            accuracyPoints: o && o.accuracy !== null && r.accuracy !== null ? 100 * (r.accuracy - o.accuracy) : null,
            paired,
        };
    });
}

/** The table's note when its final row shows the report's paired speed-up, else null. */
export function pairedNote(vs: readonly Ratio[]): string | null {
    const row = vs.find(r => r.paired);
    return row
        ? `${row.step}'s speed-up is the summary's: the original and the compressed model timed in alternating ` +
          'rounds, each at its fastest thread count; the p50 columns were each measured on their own, minutes apart.'
        : null;
}

/** The overall result: the report's summary, else the last row against the original (a run in progress). */
export function summaryOf(m: CompressedModel): Summary | null {
    if (m.report) {
        return m.report.summary;
    }
    const all = ratios(m);
    const last = all.at(-1);
    if (!last || all.length < 2 || !m.steps.has('original')) {
        return null;
    }
    return {
        sizeRatio: last.size, paramsRatio: last.params, speedupB1: last.speedupB1, speedupB32: last.speedupB32,
        accuracyDropPoints: last.accuracyPoints === null ? null : -last.accuracyPoints,
    };
}

export type BarMetric = 'size' | 'latency' | 'accuracy';
export const BAR_METRICS: readonly BarMetric[] = ['size', 'latency', 'accuracy'];

export interface Bar {
    metric: BarMetric;
    /** This step's value over the original's (1 = the original); null when either is unknown. */
    rel: number | null;
    /** Longer than the scale (which ends at MAX_SCALE): drawn to its end, marked as cut. */
    clipped: boolean;
    /** The absolute value, for the label: MB, ms (b1 p50) or the evaluate() value. */
    value: number | null;
}

export interface BarGroup {
    step: string;
    bars: Bar[];
}

/** The chart's scale ends at most at this multiple of the original: a step 50× slower would flatten the rest. */
export const MAX_SCALE = 2;

/**
 * The chart's grouped horizontal bars: per step, size, batch-1 latency (p50) and accuracy relative to
 * the original, and the scale's end: at least 1 (the original's 100 % line is always inside), at most
 * MAX_SCALE (longer bars are clipped).
 */
export function barGroups(m: CompressedModel): { groups: BarGroup[]; max: number } {
    const o = m.steps.get('original');
    let max = 1;
    const groups = stepsOf(m).map(r => {
        const bars: Bar[] = [
            { metric: 'size', value: r.sizeMb, rel: div(r.sizeMb, o?.sizeMb), clipped: false },
            { metric: 'latency', value: r.b1?.p50 ?? null, rel: div(r.b1?.p50, o?.b1?.p50), clipped: false },
            { metric: 'accuracy', value: r.accuracy, rel: div(r.accuracy, o?.accuracy), clipped: false },
        ];
        for (const b of bars) {
            if (b.rel !== null) {
                max = Math.max(max, Math.min(MAX_SCALE, b.rel));
            }
        }
        return { step: r.step, bars };
    });
    for (const g of groups) {
        for (const b of g.bars) {
            b.clipped = b.rel !== null && b.rel > max;
        }
    }
    return { groups, max };
}
