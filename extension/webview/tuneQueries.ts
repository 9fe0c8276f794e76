// The Tune view's queries (no DOM): what the view shows of a study, read from the state tune.ts builds:
// the studies by recency, the trial counts, the best trial, the optimisation history and pruning curves,
// the sampler and pruner in words, the importances and the params formatted for a table cell.
import type { TrialState } from '../src/protocol';
import { formatSig } from '../src/tune/rounding';
import type { Best, ParamValue, Study, Trial, TuneState } from './tuneTypes';

/** Studies, the one heard from most recently first. */
export function studiesByRecency(state: TuneState): Study[] {
    return [...state.studies.values()].sort((a, b) => b.lastT - a.lastT);
}

/** The study the view shows: the chosen one if it is known, else the newest. */
export function currentStudy(state: TuneState, chosen: string | null): Study | null {
    if (chosen && state.studies.has(chosen)) {
        return state.studies.get(chosen)!;
    }
    return studiesByRecency(state)[0] ?? null;
}

/** Trials by number, ascending. */
export function trialsOf(s: Study): Trial[] {
    return [...s.trials.values()].sort((a, b) => a.number - b.number);
}

export function countStates(s: Study): Record<TrialState, number> {
    const out: Record<TrialState, number> = { waiting: 0, running: 0, pruned: 0, complete: 0, fail: 0 };
    for (const t of s.trials.values()) {
        out[t.state]++;
    }
    return out;
}

const better = (dir: Study['direction'], a: number, b: number): boolean => (dir === 'maximize' ? a > b : a < b);

/** The best trial: the `tune.best` event's, else the best complete trial seen. */
export function bestOf(s: Study): Best | null {
    if (s.best) {
        return s.best;
    }
    let best: Best | null = null;
    for (const t of s.trials.values()) {
        if (t.state === 'complete' && t.value !== null && (!best || better(s.direction, t.value, best.value))) {
            best = { number: t.number, value: t.value, params: t.params };
        }
    }
    return best;
}

/** The optimisation history: each complete trial's value by trial number, and the best value so far. */
export function history(s: Study): { x: number[]; value: number[]; best: number[] } {
    const x: number[] = [];
    const value: number[] = [];
    const best: number[] = [];
    let b: number | null = null;
    for (const t of trialsOf(s)) {
        if (t.state !== 'complete' || t.value === null) {
            continue;
        }
        if (b === null || better(s.direction, t.value, b)) {
            b = t.value;
        }
        x.push(t.number);
        value.push(t.value);
        best.push(b);
    }
    return { x, value, best };
}

export interface Curve {
    number: number;
    state: TrialState;
    points: [number, number][];
}

/** Pruning curves: the trials with intermediate values (the newest `limit` of them), and their extent. */
export function curves(s: Study, limit = 300): { curves: Curve[]; x: [number, number]; y: [number, number] } | null {
    const withPoints = trialsOf(s).filter(t => t.intermediate.length > 0).slice(-limit);
    if (withPoints.length === 0) {
        return null;
    }
    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (const t of withPoints) {
        for (const [x, y] of t.intermediate) {
            x0 = Math.min(x0, x);
            x1 = Math.max(x1, x);
            y0 = Math.min(y0, y);
            y1 = Math.max(y1, y);
        }
    }
    return {
        curves: withPoints.map(t => ({ number: t.number, state: t.state, points: t.intermediate })),
        x: [x0, x1], y: [y0, y1],
    };
}

/** "running" until the study's process says it ended (`tune.done`), then "finished". */
export function studyState(s: Study): 'running' | 'finished' {
    return s.done ? 'finished' : 'running';
}

/** The sampler and pruner as the producer named them ("TPE (auto: multivariate) · Hyperband (...)"). */
export function searchLabel(s: Study): string | null {
    const sampler = s.samplerLabel ?? s.sampler;
    const pruner = s.prunerLabel ?? s.pruner;
    const parts = [sampler ? `sampler ${sampler}` : '', pruner ? `pruner ${pruner}` : ''].filter(Boolean);
    return parts.length ? parts.join(' · ') : null;
}

/** Why the importance chart is empty (null when it has bars). */
export function importanceNote(s: Study): string | null {
    if (importanceBars(s).length) {
        return null;
    }
    const k = countStates(s).complete;
    const n = s.importanceAfter;
    if (n !== null && k < n) {
        return `Importance appears after ${n} completed trials (${k} so far): with fewer, fANOVA's ranking of the parameters is mostly chance.`;
    }
    return s.importanceNote ?? `Computed every 10 completed trials and when the study ends (${k} so far).`;
}

/** Importances, largest first. */
export function importanceBars(s: Study): { name: string; value: number }[] {
    return Object.entries(s.importances ?? {}).map(([name, value]) => ({ name, value })).sort((a, b) => b.value - a.value);
}

/** A param value for a table cell: 4 significant digits (the rule `deepdive tune` prints with too). */
export function fmtParam(v: ParamValue | undefined): string {
    return formatSig(v);
}

/** Params as `a=1, b=x`. */
export function fmtParams(p: Record<string, ParamValue>): string {
    return Object.keys(p).sort().map(k => `${k}=${fmtParam(p[k])}`).join(', ');
}
