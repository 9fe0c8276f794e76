// The Tune view's queries (no DOM): what the view shows of a study, read from the state tune.ts builds:
// the studies by recency, the trial counts, the best trial, the optimisation history and pruning curves,
// the sampler and pruner in words, the importances, the params formatted for a table cell, and the
// confirmation of the top trials (`--confirm K`): its progress, its table, its plot and the answer it chose.
import type { TrialState } from '../src/protocol';
import { formatSig } from '../src/tune/rounding';
import type { Best, Candidate, ParamValue, Study, Trial, TuneState } from './tuneTypes';

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

/** The sampler, pruner and patience as the producer named them ("sampler TPE (multivariate) · pruner ... · patience 2 (the default)"). */
export function searchLabel(s: Study): string | null {
    const sampler = s.samplerLabel ?? s.sampler;
    const pruner = s.prunerLabel ?? s.pruner;
    const patience = s.patience !== null ? `patience ${s.patience}${s.patienceSource ? ` (${s.patienceSource})` : ''}`
        : s.patienceSource ? `patience ${s.patienceSource}` : '';
    const parts = [sampler ? `sampler ${sampler}` : '', pruner ? `pruner ${pruner}` : '', patience].filter(Boolean);
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

/** "re-training 4/9" while the confirmation runs; null before it starts and once it is summarized. */
export function confirmProgress(s: Study): string | null {
    const c = s.confirmation;
    if (!c || c.finished) {
        return null;
    }
    return c.total !== null ? `re-training ${c.done}/${c.total}` : `re-training ${c.done}`;
}

/** `0.7836 ± 0.01203`: a mean and the half-width of its 95 % interval (the interval is symmetric: Student's t). */
function meanText(c: Candidate): string {
    if (c.mean === null) {
        return '—';
    }
    return c.ci95 ? `${formatSig(c.mean)} ± ${formatSig((c.ci95[1] - c.ci95[0]) / 2)}` : formatSig(c.mean);
}

export interface ConfirmRow {
    number: number;
    /** The confirmation chose it: the study's answer. */
    chosen: boolean;
    /** trial, search value, one per seed, mean ± 95 % CI: as the cells show them. */
    cells: string[];
    /** The 95 % interval as `[low, high]`, for the cell's tooltip. */
    interval: string | null;
}

/**
 * The Confirmed table: a row per re-trained trial (best search value first once summarized) with its search
 * value, each seed's value, and the mean ± 95 % CI; `head` names the columns; null without a confirmation.
 */
export function confirmRows(s: Study): { head: string[]; rows: ConfirmRow[]; reason: string | null; failures: string[] } | null {
    const c = s.confirmation;
    if (!c || c.candidates.length === 0) {
        return null;
    }
    const head = ['trial', `search ${s.metric}`, ...c.seeds.map(seed => `seed ${seed}`), 'mean ± 95 % CI'];
    const rows = c.candidates.map(cand => ({
        number: cand.number,
        chosen: c.finished && cand.number === c.chosen,
        cells: [
            String(cand.number), formatSig(cand.searchValue), ...cand.values.map(v => formatSig(v)), meanText(cand),
        ],
        interval: cand.ci95 ? `[${formatSig(cand.ci95[0])}, ${formatSig(cand.ci95[1])}]` : null,
    }));
    return { head, rows, reason: c.reason, failures: c.failures };
}

export interface ConfirmPlot {
    columns: {
        number: number;
        chosen: boolean;
        search: number | null;
        /** The finished re-trainings' values. */
        values: number[];
        mean: number | null;
        ci95: [number, number] | null;
    }[];
    /** The extent of every value drawn (search values, re-trained values, intervals). */
    y: [number, number];
}

/**
 * The Confirmed plot: a column per re-trained trial with its re-trained values, their mean and 95 % interval
 * next to its search value (the number people compare them with). Null before any value is known.
 */
export function confirmPlot(s: Study): ConfirmPlot | null {
    const c = s.confirmation;
    if (!c) {
        return null;
    }
    let y0 = Infinity;
    let y1 = -Infinity;
    const seen = (v: number | null): void => {
        if (v !== null) {
            y0 = Math.min(y0, v);
            y1 = Math.max(y1, v);
        }
    };
    const columns = c.candidates.map(cand => {
        const values = cand.values.filter((v): v is number => v !== null);
        [cand.searchValue, cand.mean, ...values, ...(cand.ci95 ?? [])].forEach(seen);
        return {
            number: cand.number, chosen: c.finished && cand.number === c.chosen, search: cand.searchValue, values,
            mean: cand.mean, ci95: cand.ci95,
        };
    });
    if (!Number.isFinite(y0) || columns.every(col => col.values.length === 0)) {
        return null;
    }
    return { columns, y: [y0, y1] };
}

/**
 * The study's answer in one line, when a confirmation chose it: `Confirmed best: #12 accuracy mean 0.7836 ±
 * 0.01203 over 3 seeds (search 0.7791)`. Null otherwise (the best trial is then the answer).
 */
export function answerLine(s: Study): string | null {
    const c = s.confirmation;
    const cand = c && c.finished && c.chosen !== null ? c.candidates.find(x => x.number === c.chosen) : undefined;
    if (!cand || cand.mean === null) {
        return null;
    }
    const n = cand.values.filter(v => v !== null).length;
    const search = cand.searchValue !== null ? ` (search ${formatSig(cand.searchValue)})` : '';
    return `Confirmed best: #${cand.number} ${s.metric} mean ${meanText(cand)} over ${n} seed${n === 1 ? '' : 's'}${search}`;
}
