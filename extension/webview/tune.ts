// The Tune view's pure logic (no DOM): studies built from the `tune.*` events that `deepdive tune` streams
// to the hub inside `samples` messages (run id `tune-<study>`), and the series the view draws from them:
// optimisation history with the best-so-far line, pruning curves, parallel coordinates, importances.
// tuneView.ts renders this state; unit tests drive it directly. The events are the protocol's
// (server/protocol/hub_events.py, generated into src/protocol.ts): read by their declared keys, each value checked.
import {
    HubEvent, StreamMessage, StreamSamples, StreamSnapshot, TrialState, TuneBestEvent, TuneDirection, TuneDoneEvent,
    TuneImportanceEvent, TuneStudyEvent, TuneTrialEvent, Unchecked, Vocabularies,
} from '../src/protocol';
import { formatSig } from '../src/tune/rounding';
export type ParamValue = number | string | boolean | null;

export interface Trial {
    number: number;
    state: TrialState;
    params: Record<string, ParamValue>;
    value: number | null;
    /** [step, value] pairs, oldest first (the producer keeps the last 200). */
    intermediate: [number, number][];
    reason: string | null;
    worker: number | null;
    waitingReason: string | null;
    durationS: number | null;
    /** Time of the event this trial comes from (a newer event of the same trial replaces it). */
    t: number;
}

export interface Best {
    number: number;
    value: number;
    params: Record<string, ParamValue>;
}

export interface Done {
    nComplete: number;
    nPruned: number;
    nFail: number;
    bestValue: number | null;
    bestParams: Record<string, ParamValue>;
    seconds: number | null;
    /** When the study's process ended (a later tune.study is a new run of the study). */
    t: number;
}

export interface Study {
    name: string;
    run: string | null;
    direction: TuneDirection;
    metric: string;
    sampler: string | null;
    pruner: string | null;
    /** What the sampler and pruner options run, in words ("TPE (auto: multivariate)"), when the producer says. */
    samplerLabel: string | null;
    prunerLabel: string | null;
    /** Where the metric and direction came from (--metric, the study, or the script). */
    metricSource: string | null;
    /** Complete trials before importance is shown (the producer's threshold). */
    importanceAfter: number | null;
    /** Why the producer's last importance event had no values. */
    importanceNote: string | null;
    nTrials: number | null;
    parallel: number | null;
    storage: string | null;
    trials: Map<number, Trial>;
    best: Best | null;
    importances: Record<string, number> | null;
    done: Done | null;
    lastT: number;
    /** Trials forgotten to keep memory bounded (the oldest finished ones). */
    forgotten: number;
}

export interface TuneState {
    studies: Map<string, Study>;
}

/** Trials kept per study: beyond that the oldest finished ones (never the best) are forgotten. */
export const MAX_TRIALS = 2000;
/** Studies kept: beyond that the one heard from least recently is forgotten. */
export const MAX_STUDIES = 20;
/** Intermediate values kept per trial (the producer sends at most this many). */
export const MAX_INTERMEDIATE = 200;

const STATES: readonly TrialState[] = Vocabularies.tuneTrialStates;
const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const str = (x: unknown): string | null => (typeof x === 'string' ? x : null);
const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

export function emptyTune(): TuneState {
    return { studies: new Map() };
}

function params(x: unknown): Record<string, ParamValue> {
    const out: Record<string, ParamValue> = {};
    if (isObj(x)) {
        for (const [k, v] of Object.entries(x)) {
            out[k] = typeof v === 'number' ? (Number.isFinite(v) ? v : null)
                : typeof v === 'string' || typeof v === 'boolean' ? v : v === null ? null : JSON.stringify(v);
        }
    }
    return out;
}

function studyOf(state: TuneState, name: string): Study {
    let s = state.studies.get(name);
    if (!s) {
        s = {
            name, run: null, direction: 'minimize', metric: 'value', sampler: null, pruner: null, samplerLabel: null,
            prunerLabel: null, metricSource: null, importanceAfter: null, importanceNote: null, nTrials: null, parallel: null, storage: null, trials: new Map(), best: null, importances: null, done: null, lastT: 0, forgotten: 0,
        };
        state.studies.set(name, s);
        if (state.studies.size > MAX_STUDIES) {
            let oldest: Study | null = null;
            for (const o of state.studies.values()) {
                if (o !== s && (!oldest || o.lastT < oldest.lastT)) {
                    oldest = o;
                }
            }
            if (oldest) {
                state.studies.delete(oldest.name);
            }
        }
    }
    return s;
}

/** The study an event belongs to: its `study` field, else the run id without `tune-`. */
function studyName(e: Unchecked<TuneStudyEvent>, run: string | null): string | null {
    const s = str(e.study);
    if (s) {
        return s;
    }
    return run && run.startsWith('tune-') ? run.slice(5) : null;
}

/**
 * Applies one /stream message to `state`: the `tune.*` events of `samples` messages (and of a snapshot's
 * messages). Returns the names of the studies that changed (added to `changed` when given).
 */
export function applyTune(state: TuneState, msg: unknown, changed: Set<string> = new Set()): Set<string> {
    if (!isObj(msg)) {
        return changed;
    }
    const type = msg.type as StreamMessage['type'];
    const snapshot = msg as Unchecked<StreamSnapshot>;
    const samples = msg as Unchecked<StreamSamples>;
    if (type === 'snapshot' && Array.isArray(snapshot.messages)) {
        for (const m of snapshot.messages) {
            applyTune(state, m, changed);
        }
    } else if (type === 'samples' && Array.isArray(samples.events)) {
        const run = str(samples.run);
        const msgT = num(samples.t) ?? 0;
        for (const e of samples.events) {
            if (isObj(e) && typeof e.kind === 'string' && e.kind.startsWith('tune.')) {
                const name = applyEvent(state, e, run, msgT);
                if (name !== null) {
                    changed.add(name);
                }
            }
        }
    }
    return changed;
}

/**
 * The message for the Runs panels: null for a `samples` message of a `tune-` run that carries no
 * samples (only tune events: the Tune section shows them; as a run it would take over "Current run"
 * with empty charts; only its `dropped` count, when it has one), a snapshot without such messages,
 * anything else unchanged.
 */
export function forRuns(msg: unknown): unknown {
    if (!isObj(msg)) {
        return msg;
    }
    const type = msg.type as StreamMessage['type'];
    if (type === 'samples') {
        const m = msg as Unchecked<StreamSamples>;
        const tuneOnly = typeof m.run === 'string' && m.run.startsWith('tune-')
            && (!Array.isArray(m.samples) || m.samples.length === 0);
        if (!tuneOnly) {
            return msg;
        }
        // the hub's count of entries this page lost still counts
        return num(m.dropped) ? { type: 'dropped', dropped: m.dropped } : null;
    }
    const snapshot = msg as Unchecked<StreamSnapshot>;
    if (type === 'snapshot' && Array.isArray(snapshot.messages)) {
        const all: unknown[] = snapshot.messages;
        const kept = all.map(forRuns).filter(m => m !== null);
        return kept.length === all.length && kept.every((m, i) => m === all[i]) ? msg : { ...msg, messages: kept };
    }
    return msg;
}

/** Applies one `tune.*` event; returns its study's name, or null when it was ignored. */
export function applyEvent(state: TuneState, event: Record<string, unknown>, run: string | null = null, msgT = 0): string | null {
    const name = studyName(event, str(event.run) ?? run);
    if (!name) {
        return null;
    }
    const t = num(event.t) ?? msgT;
    switch (event.kind as HubEvent['kind']) {
        case 'tune.study': {
            const e = event as Unchecked<TuneStudyEvent>;
            const s = studyOf(state, name);
            s.run = str(e.run) ?? run ?? s.run;
            s.direction = e.direction === 'maximize' ? 'maximize' : 'minimize';
            s.metric = str(e.metric) ?? s.metric;
            s.sampler = str(e.sampler);
            s.pruner = str(e.pruner);
            s.samplerLabel = str(e.sampler_label);
            s.prunerLabel = str(e.pruner_label);
            s.metricSource = str(e.metric_source);
            s.importanceAfter = num(e.importance_after);
            if (s.done && s.done.t <= t) {
                s.done = null;  // the study runs again (a rerun continues it)
            }
            s.nTrials = num(e.n_trials);
            s.parallel = num(e.parallel);
            s.storage = str(e.storage);
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        case 'tune.trial': {
            const e = event as Unchecked<TuneTrialEvent>;
            const number = num(e.number);
            if (number === null) {
                return null;
            }
            const s = studyOf(state, name);
            s.run = s.run ?? str(e.run) ?? run;
            const old = s.trials.get(number);
            if (old && old.t > t) {
                return null;  // an older event (the snapshot after a reconnect repeats history)
            }
            const inter: [number, number][] = [];
            if (Array.isArray(e.intermediate)) {
                for (const p of e.intermediate) {
                    if (Array.isArray(p) && num(p[0]) !== null && num(p[1]) !== null) {
                        inter.push([p[0] as number, p[1] as number]);
                    }
                }
            }
            if (inter.length > MAX_INTERMEDIATE) {
                inter.splice(0, inter.length - MAX_INTERMEDIATE);
            }
            const st = STATES.includes(e.state as TrialState) ? (e.state as TrialState) : 'running';
            s.trials.set(number, {
                number, state: st, params: params(e.params), value: num(e.value), intermediate: inter,
                reason: str(e.reason), worker: num(e.worker), waitingReason: str(e.waiting_reason),
                durationS: num(e.duration_s), t,
            });
            s.lastT = Math.max(s.lastT, t);
            capTrials(s);
            return name;
        }
        case 'tune.best': {
            const e = event as Unchecked<TuneBestEvent>;
            const number = num(e.number);
            const value = num(e.value);
            if (number === null || value === null) {
                return null;
            }
            const s = studyOf(state, name);
            s.best = { number, value, params: params(e.params) };
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        case 'tune.importance': {
            const e = event as Unchecked<TuneImportanceEvent>;
            if (!isObj(e.importances)) {
                return null;
            }
            const s = studyOf(state, name);
            const imp: Record<string, number> = {};
            for (const [k, v] of Object.entries(e.importances)) {
                const x = num(v);
                if (x !== null) {
                    imp[k] = x;
                }
            }
            s.importances = imp;
            s.importanceNote = str(e.note);
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        case 'tune.done': {
            const e = event as Unchecked<TuneDoneEvent>;
            const s = studyOf(state, name);
            s.done = {
                nComplete: num(e.n_complete) ?? 0, nPruned: num(e.n_pruned) ?? 0, nFail: num(e.n_fail) ?? 0,
                bestValue: num(e.best_value), bestParams: params(e.best_params), seconds: num(e.seconds), t,
            };
            settle(s, e.trials, t);
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        default:
            return null;
    }
}

/**
 * The trials' states as the study's storage holds them at its end (`tune.done`'s `[number, state, value]`):
 * a trial whose last live event was lost on the way (a full queue drops the oldest) would otherwise stay
 * "running" in a finished study. A trial another process still runs is `running` there too.
 */
function settle(s: Study, finals: unknown, t: number): void {
    if (!Array.isArray(finals)) {
        return;
    }
    for (const f of finals) {
        if (!Array.isArray(f) || num(f[0]) === null || !STATES.includes(f[1] as TrialState)) {
            continue;
        }
        const trial = s.trials.get(f[0] as number);
        if (trial && trial.state !== f[1]) {
            trial.state = f[1] as TrialState;
            trial.value = num(f[2]);
            trial.t = Math.max(trial.t, t);
        }
    }
}

/** Forgets the oldest finished trials (never the best, never a running one) beyond MAX_TRIALS. */
function capTrials(s: Study): void {
    let excess = s.trials.size - MAX_TRIALS;
    if (excess <= 0) {
        return;
    }
    const numbers = [...s.trials.keys()].sort((a, b) => a - b);
    const keep = bestOf(s)?.number;
    for (const n of numbers) {
        if (excess <= 0) {
            break;
        }
        const tr = s.trials.get(n)!;
        if (n === keep || tr.state === 'running' || tr.state === 'waiting') {
            continue;
        }
        s.trials.delete(n);
        s.forgotten++;
        excess--;
    }
}

// ---------------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Parallel coordinates
// ---------------------------------------------------------------------------------------------------

export interface Axis {
    name: string;
    kind: 'linear' | 'log' | 'categorical';
    /** linear/log: the range (log: of the values themselves, drawn on a log scale). */
    min: number;
    max: number;
    /** categorical: the categories in axis order (bottom to top). */
    categories: string[];
}

export interface Coords {
    axes: Axis[];
    /** One line per complete trial: the position on each axis in [0, 1] (null: the trial has no such param). */
    lines: { number: number; value: number; pos: (number | null)[]; color: number }[];
}

/** Positive numbers that span this many times from low to high are drawn on a log axis. */
export const LOG_RATIO = 100;

function axisFor(name: string, values: ParamValue[]): Axis {
    const present = values.filter((v): v is number | string | boolean => v !== null);
    if (present.some(v => typeof v !== 'number')) {
        const categories = [...new Set(present.map(String))].sort();
        return { name, kind: 'categorical', min: 0, max: Math.max(0, categories.length - 1), categories };
    }
    const nums = present as number[];
    const min = nums.length ? Math.min(...nums) : 0;
    const max = nums.length ? Math.max(...nums) : 0;
    const kind = min > 0 && max / min >= LOG_RATIO ? 'log' : 'linear';
    return { name, kind, min, max, categories: [] };
}

/** Where `v` sits on `axis`, in [0, 1] (0.5 when the axis has no extent); null when absent. */
export function position(axis: Axis, v: ParamValue | undefined): number | null {
    if (v === null || v === undefined) {
        return null;
    }
    if (axis.kind === 'categorical') {
        const i = axis.categories.indexOf(String(v));
        if (i < 0) {
            return null;
        }
        return axis.categories.length > 1 ? i / (axis.categories.length - 1) : 0.5;
    }
    if (typeof v !== 'number') {
        return null;
    }
    if (axis.max === axis.min) {
        return 0.5;
    }
    if (axis.kind === 'log') {
        return (Math.log(v) - Math.log(axis.min)) / (Math.log(axis.max) - Math.log(axis.min));
    }
    return (v - axis.min) / (axis.max - axis.min);
}

/**
 * Parallel coordinates of the complete trials: one axis per param (sorted by name) and a last one for
 * the objective value; `color` in [0, 1] is how good the trial is (1: the best, 0: the worst).
 */
export function parallelCoords(s: Study): Coords {
    const done = trialsOf(s).filter(t => t.state === 'complete' && t.value !== null);
    const names = [...new Set(done.flatMap(t => Object.keys(t.params)))].sort();
    const axes = names.map(n => axisFor(n, done.map(t => t.params[n] ?? null)));
    const valueAxis = axisFor(s.metric || 'value', done.map(t => t.value));
    if (valueAxis.kind === 'log') {
        valueAxis.kind = 'linear';  // the objective stays linear: the colour scale reads it that way too
    }
    axes.push(valueAxis);
    const lines = done.map(t => {
        const pos = names.map((n, i) => position(axes[i], t.params[n]));
        const vp = position(valueAxis, t.value) ?? 0.5;
        pos.push(vp);
        const color = valueAxis.max === valueAxis.min ? 1 : s.direction === 'maximize' ? vp : 1 - vp;
        return { number: t.number, value: t.value as number, pos, color };
    });
    return { axes, lines };
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

// ---------------------------------------------------------------------------------------------------
// Colours (the view reads theme colours from CSS variables and blends two of them by value)
// ---------------------------------------------------------------------------------------------------

/** `#rgb`, `#rrggbb`, `#rrggbbaa`, `rgb(r, g, b)` or `rgba(...)` as [r, g, b]; null for anything else. */
export function parseColor(css: string): [number, number, number] | null {
    const s = css.trim();
    let m = /^#([0-9a-f]{3})$/i.exec(s);
    if (m) {
        return [0, 1, 2].map(i => parseInt(m![1][i] + m![1][i], 16)) as [number, number, number];
    }
    m = /^#([0-9a-f]{6})(?:[0-9a-f]{2})?$/i.exec(s);
    if (m) {
        return [0, 2, 4].map(i => parseInt(m![1].slice(i, i + 2), 16)) as [number, number, number];
    }
    m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i.exec(s);
    if (m) {
        return [Number(m[1]), Number(m[2]), Number(m[3])].map(x => Math.round(Math.min(255, x))) as [number, number, number];
    }
    return null;
}

/** The colour `f` of the way from `a` to `b` (f in [0, 1]) as `rgb(...)`. */
export function mixColor(a: [number, number, number], b: [number, number, number], f: number): string {
    const k = Math.min(1, Math.max(0, Number.isFinite(f) ? f : 0));
    const c = a.map((x, i) => Math.round(x + (b[i] - x) * k));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}
