// The Tune view's pure logic (no DOM): studies built from the `tune.*` events that `deepdive tune` streams
// to the hub inside `samples` messages (run id `tune-<study>`), and the series the view draws from them:
// optimisation history with the best-so-far line, pruning curves, parallel coordinates, importances, and the
// confirmation of the top trials (`--confirm K`: tune.confirm per re-training, tune.confirmed at the end).
// tuneView.ts renders this state; unit tests drive it directly. The events are the protocol's
// (server/protocol/hub_events.py, generated into src/protocol.ts): read by their declared keys, each value checked.
// The queries (tuneQueries.ts), parallel coordinates (tuneCoords.ts), colours (colors.ts) and the state's
// types (tuneTypes.ts) live in their own modules; this one re-exports them, so importers keep one path.
import {
    ConfirmCandidate, HubEvent, StreamMessage, StreamSamples, StreamSnapshot, TrialState, TuneBestEvent, TuneConfirmation,
    TuneConfirmedEvent, TuneConfirmEvent, TuneDoneEvent, TuneImportanceEvent, TuneStudyEvent, TuneTrialEvent, Unchecked,
    Vocabularies,
} from '../src/protocol';
import { isObj, num, str } from './read';
import { bestOf } from './tuneQueries';
import type { Candidate, Confirmation, ParamValue, Study, TuneState } from './tuneTypes';

export type { Best, Candidate, Confirmation, Done, ParamValue, Study, Trial, TuneState } from './tuneTypes';
export {
    answerLine, bestOf, confirmPlot, confirmProgress, confirmRows, countStates, currentStudy, curves, fmtParam, fmtParams,
    history, importanceBars, importanceNote, searchLabel, studiesByRecency, studyState, trialsOf, type ConfirmPlot,
    type ConfirmRow, type Curve,
} from './tuneQueries';
export { LOG_RATIO, parallelCoords, position, type Axis, type Coords } from './tuneCoords';
export { mixColor, parseColor } from './colors';

/** Trials kept per study: beyond that the oldest finished ones (never the best) are forgotten. */
export const MAX_TRIALS = 2000;
/** Studies kept: beyond that the one heard from least recently is forgotten. */
export const MAX_STUDIES = 20;
/** Intermediate values kept per trial (the producer sends at most this many). */
export const MAX_INTERMEDIATE = 200;

const STATES: readonly TrialState[] = Vocabularies.tuneTrialStates;

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
            prunerLabel: null, patience: null, patienceSource: null, metricSource: null, importanceAfter: null, importanceNote: null, nTrials: null, parallel: null, storage: null, trials: new Map(), best: null, importances: null, done: null,
            confirmation: null, lastT: 0, forgotten: 0,
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
            s.patience = num(e.patience);
            s.patienceSource = str(e.patience_source);
            s.metricSource = str(e.metric_source);
            s.importanceAfter = num(e.importance_after);
            if (s.done && s.done.t <= t) {
                s.done = null;  // the study runs again (a rerun continues it)
            }
            if (s.confirmation && s.confirmation.t <= t) {
                s.confirmation = null;  // the rerun confirms again (or not) after its own search
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
                bestValue: num(e.best_value), bestParams: params(e.best_params), seconds: num(e.seconds),
                chosenNumber: num(e.chosen_number), chosenParams: params(e.chosen_params), t,
            };
            settle(s, e.trials, t);
            if (isObj(e.confirmed)) {
                summarize(s, e.confirmed, t);
            }
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        case 'tune.confirm': {
            const e = event as Unchecked<TuneConfirmEvent>;
            const number = num(e.number);
            const seed = num(e.seed);
            if (number === null || seed === null) {
                return null;
            }
            const s = studyOf(state, name);
            if (!retrained(s, e, number, seed, t)) {
                return null;
            }
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        case 'tune.confirmed': {
            const s = studyOf(state, name);
            summarize(s, event, t);
            s.lastT = Math.max(s.lastT, t);
            return name;
        }
        default:
            return null;
    }
}

function newConfirmation(t: number): Confirmation {
    return { k: null, seeds: [], candidates: [], chosen: null, reason: null, done: 0, total: null, failures: [], finished: false, t };
}

/**
 * One re-training heard live (tune.confirm): its value goes in its candidate's column for its seed. An event
 * older than a finished confirmation (a reconnect's snapshot repeats them) changes nothing; false then.
 */
function retrained(s: Study, e: Unchecked<TuneConfirmEvent>, number: number, seed: number, t: number): boolean {
    let c = s.confirmation;
    if (c && c.finished) {
        if (t <= c.t) {
            return false;
        }
        c = null;  // a later confirmation of the same study
    }
    if (!c) {
        c = newConfirmation(t);
        s.confirmation = c;
    }
    let col = c.seeds.indexOf(seed);
    if (col < 0) {
        c.seeds.push(seed);
        c.seeds.sort((a, b) => a - b);
        col = c.seeds.indexOf(seed);
        for (const cand of c.candidates) {
            cand.values.splice(col, 0, null);
        }
    }
    let cand = c.candidates.find(x => x.number === number);
    if (!cand) {
        const trial = s.trials.get(number);
        cand = {
            number, params: trial?.params ?? {}, searchValue: trial?.value ?? null, values: c.seeds.map(() => null),
            mean: null, std: null, ci95: null,
        };
        c.candidates.push(cand);
    }
    const value = e.state === 'complete' ? num(e.value) : null;
    cand.values[col] = value;
    if (e.state === 'fail') {
        const why = `trial ${number} seed ${seed}: ${str(e.reason) ?? 'failed'}`;
        if (!c.failures.includes(why)) {
            c.failures.push(why);
        }
    }
    c.done = Math.max(c.done, num(e.done) ?? 0);
    c.total = num(e.total) ?? c.total;
    c.t = Math.max(c.t, t);
    return true;
}

/** The producer's summary (tune.confirmed, or tune.done's `confirmed`): it replaces what was heard live. */
function summarize(s: Study, e: Unchecked<TuneConfirmation> | Unchecked<TuneConfirmedEvent>, t: number): void {
    const old = s.confirmation;
    if (old && old.finished && old.t > t) {
        return;
    }
    const c = newConfirmation(t);
    c.k = num(e.k);
    c.seeds = Array.isArray(e.seeds) ? e.seeds.map(num).filter((x): x is number => x !== null) : [];
    c.candidates = Array.isArray(e.candidates) ? e.candidates.map(x => candidate(x, c.seeds.length)).filter((x): x is Candidate => x !== null) : [];
    c.chosen = num(e.chosen);
    c.reason = str(e.reason);
    const total = c.candidates.length * c.seeds.length;
    c.total = old?.total ?? total;
    c.done = old?.total ? old.total : total;
    c.failures = old?.failures ?? [];
    c.finished = true;
    s.confirmation = c;
}

function candidate(x: unknown, seeds: number): Candidate | null {
    if (!isObj(x)) {
        return null;
    }
    const e = x as Unchecked<ConfirmCandidate>;
    const number = num(e.number);
    if (number === null) {
        return null;
    }
    const values: (number | null)[] = Array.isArray(e.values) ? e.values.map(num) : [];
    while (values.length < seeds) {
        values.push(null);
    }
    const ci = Array.isArray(e.ci95) && e.ci95.length === 2 && num(e.ci95[0]) !== null && num(e.ci95[1]) !== null
        ? [e.ci95[0] as number, e.ci95[1] as number] as [number, number] : null;
    return { number, params: params(e.params), searchValue: num(e.search_value), values, mean: num(e.mean), std: num(e.std), ci95: ci };
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
