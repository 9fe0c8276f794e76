// The Compression view's pure logic (no DOM): the models `deepdive compress` streams to the hub as
// `compress.*` events inside `samples` messages (run id `compress-<model stem>`): the step it is on
// (`compress.progress`), each step's measured row (`compress.step`) and the final report
// (`compress.report`, whose rows replace the live ones). Per model only the latest run is kept; each
// step is compared with the original (size, parameters, latency, accuracy). compressView.ts renders it.
// The events are the protocol's (server/protocol/hub_events.py, generated into src/protocol.ts): read by
// their declared keys, each value checked as it is read.
import {
    CompressOutputs, CompressProgressEvent, CompressReportEvent, CompressStepRow, CompressSummary,
    HubEvent, LatencyFigures, StreamMessage, StreamSamples, StreamSnapshot, Unchecked, Vocabularies,
} from '../src/protocol';

export interface Latency {
    p50: number | null;
    p95: number | null;
    runs: number | null;
}

export interface StepRow {
    step: string;
    params: number | null;
    sizeMb: number | null;
    b1: Latency | null;
    b32: Latency | null;
    /** What the evaluation script's evaluate() returned (a fraction for accuracy). */
    accuracy: number | null;
    seconds: number | null;
    detail: Record<string, unknown>;
    t: number;
}

/** What the running pipeline does now. */
export interface Live {
    step: string;
    phase: string;
    /** The progress event's numbers (distillation's loss, the pruning amount). */
    numbers: Record<string, number>;
    t: number;
}

export interface Summary {
    sizeRatio: number | null;
    paramsRatio: number | null;
    speedupB1: number | null;
    speedupB32: number | null;
    accuracyDropPoints: number | null;
    /** The thread counts the batch 1 speed-up compares (each model at its fastest), when the report has them. */
    threadsB1?: { original: number; compressed: number } | null;
}

export interface ReportInfo {
    target: string | null;
    threads: number | null;
    eval: string | null;
    summary: Summary;
    outputs: { model: string | null; json: string | null; markdown: string | null };
    t: number;
}

export interface CompressedModel {
    /** The model file's stem: the run id without `compress-`. */
    name: string;
    run: string;
    /** The model file, once the report names it. */
    path: string | null;
    /** The latest run's rows by step. */
    steps: Map<string, StepRow>;
    /** Null before the first progress event and once the report came. */
    live: Live | null;
    report: ReportInfo | null;
    /** When the latest run started (its first event). */
    startT: number;
    lastT: number;
    /** Events seen at `lastT` (a reconnect's snapshot repeats them; a coarse clock may give several one time). */
    seenAtLastT: Set<string>;
}

export interface CompressState {
    models: Map<string, CompressedModel>;
}

/** Models kept: beyond that the one heard from least recently is forgotten. */
export const MAX_MODELS = 20;
/** The report's rows in pipeline order; other step names go after them. */
export const STEP_ORDER = Vocabularies.compressSteps;
export const RUN_PREFIX = 'compress-';

const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const str = (x: unknown): string | null => (typeof x === 'string' && x !== '' ? x : null);
const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

export function emptyCompress(): CompressState {
    return { models: new Map() };
}

function modelOf(state: CompressState, run: string, t: number): CompressedModel {
    let m = state.models.get(run);
    if (!m) {
        m = {
            name: run.startsWith(RUN_PREFIX) ? run.slice(RUN_PREFIX.length) : run, run, path: null, steps: new Map(),
            live: null, report: null, startT: t, lastT: -Infinity, seenAtLastT: new Set(),
        };
        state.models.set(run, m);
        if (state.models.size > MAX_MODELS) {
            let oldest: CompressedModel | null = null;
            for (const o of state.models.values()) {
                if (o !== m && (!oldest || o.lastT < oldest.lastT)) {
                    oldest = o;
                }
            }
            if (oldest) {
                state.models.delete(oldest.run);
            }
        }
    }
    return m;
}

function latency(figures: unknown): Latency | null {
    if (!isObj(figures)) {
        return null;
    }
    const x = figures as Unchecked<LatencyFigures>;
    return { p50: num(x.p50), p95: num(x.p95), runs: num(x.runs) };
}

/** One row of `compress.step` (or of the report's `steps`); null without a step name. */
export function parseRow(row: unknown, t: number): StepRow | null {
    if (!isObj(row)) {
        return null;
    }
    const x = row as Unchecked<CompressStepRow>;
    const step = str(x.step);
    if (!step) {
        return null;
    }
    const lat = isObj(x.latency_ms) ? x.latency_ms : {};
    return {
        step, params: num(x.params), sizeMb: num(x.size_mb), b1: latency(lat.b1), b32: latency(lat.b32),
        accuracy: num(x.accuracy), seconds: num(x.seconds), detail: isObj(x.detail) ? x.detail : {}, t,
    };
}

function newRun(m: CompressedModel, t: number): void {
    m.steps = new Map();
    m.report = null;
    m.live = null;
    m.startT = t;
}

/**
 * Applies one /stream message to `state`: the `compress.*` events of `samples` messages (and of a
 * snapshot's messages). Returns the run ids of the models that changed (added to `changed` when given).
 */
export function applyCompress(state: CompressState, msg: unknown, changed: Set<string> = new Set()): Set<string> {
    if (!isObj(msg)) {
        return changed;
    }
    const type = msg.type as StreamMessage['type'];
    const snapshot = msg as Unchecked<StreamSnapshot>;
    const samples = msg as Unchecked<StreamSamples>;
    if (type === 'snapshot' && Array.isArray(snapshot.messages)) {
        for (const m of snapshot.messages) {
            applyCompress(state, m, changed);
        }
    } else if (type === 'samples' && Array.isArray(samples.events)) {
        const run = str(samples.run);
        const msgT = num(samples.t) ?? 0;
        for (const e of samples.events) {
            if (isObj(e) && typeof e.kind === 'string' && e.kind.startsWith('compress.')) {
                const id = applyEvent(state, e, run, msgT);
                if (id !== null) {
                    changed.add(id);
                }
            }
        }
    }
    return changed;
}

/** Applies one `compress.*` event; returns its model's run id, or null when it was ignored. */
export function applyEvent(state: CompressState, event: Record<string, unknown>, run: string | null = null, msgT = 0): string | null {
    const kind = event.kind as HubEvent['kind'];
    const id = str(event.run) ?? run;
    if (!id || (kind !== 'compress.progress' && kind !== 'compress.step' && kind !== 'compress.report')) {
        return null;
    }
    const t = num(event.t) ?? msgT;
    const known = state.models.get(id);
    const seen = `${String(kind)}|${String(event.step)}|${String(event.phase)}`;
    if (known && (t < known.lastT || (t === known.lastT && known.seenAtLastT.has(seen)))) {
        return null;  // already applied (the snapshot after a reconnect repeats recent history)
    }
    let m: CompressedModel;
    switch (kind) {
        case 'compress.progress': {
            const e = event as Unchecked<CompressProgressEvent>;
            const step = str(e.step);
            if (!step) {
                return null;
            }
            m = modelOf(state, id, t);
            if (m.report || (step === 'original' && m.steps.size > 0)) {
                newRun(m, t);  // a new run of this model
            }
            const numbers: Record<string, number> = {};
            for (const [k, v] of Object.entries(e)) {
                const x = num(v);
                if (x !== null && k !== 't' && k !== 'rank') {
                    numbers[k] = x;
                }
            }
            m.live = { step, phase: typeof e.phase === 'string' ? e.phase : '', numbers, t };
            break;
        }
        case 'compress.step': {
            const row = parseRow(event, t);  // a CompressStepEvent: a row with the event's own keys
            if (!row) {
                return null;
            }
            m = modelOf(state, id, t);
            if (m.report || (row.step === 'original' && m.steps.has('original'))) {
                newRun(m, t);
            }
            m.steps.set(row.step, row);
            m.live = { step: row.step, phase: 'measured', numbers: {}, t };
            break;
        }
        default: {  // compress.report
            const e = event as Unchecked<CompressReportEvent>;
            const rows = Array.isArray(e.steps) ? e.steps.map(r => parseRow(r, t)).filter((r): r is StepRow => r !== null) : [];
            if (rows.length === 0) {
                return null;
            }
            m = modelOf(state, id, t);
            m.steps = new Map(rows.map(r => [r.step, r]));
            const s: Unchecked<CompressSummary> = isObj(e.summary) ? e.summary : {};
            const o: Unchecked<CompressOutputs> = isObj(e.outputs) ? e.outputs : {};
            m.report = {
                target: str(e.target), threads: num(e.threads), eval: str(e.eval),
                summary: {
                    sizeRatio: num(s.size_ratio), paramsRatio: num(s.params_ratio), speedupB1: num(s.speedup_b1),
                    speedupB32: num(s.speedup_b32), accuracyDropPoints: num(s.accuracy_drop_points),
                    threadsB1: pairedThreads(s.latency_paired_ms),
                },
                outputs: { model: str(o.model), json: str(o.json), markdown: str(o.markdown) },
                t,
            };
            m.path = str(e.model) ?? m.path;
            m.live = null;
            break;
        }
    }
    if (t > m.lastT) {
        m.lastT = t;
        m.seenAtLastT = new Set();
    }
    m.seenAtLastT.add(seen);
    return id;
}

/**
 * The message for the Runs panels: null for a `samples` message of a `compress-` run that carries no
 * samples (only compress events: the Compression section shows them; as a run it would take over
 * "Current run" with empty charts), only its `dropped` count when it has one; a snapshot without such
 * messages; anything else unchanged.
 */
export function compressForRuns(msg: unknown): unknown {
    if (!isObj(msg)) {
        return msg;
    }
    const type = msg.type as StreamMessage['type'];
    if (type === 'samples') {
        const m = msg as Unchecked<StreamSamples>;
        const only = typeof m.run === 'string' && m.run.startsWith(RUN_PREFIX)
            && (!Array.isArray(m.samples) || m.samples.length === 0);
        if (!only) {
            return msg;
        }
        return num(m.dropped) ? { type: 'dropped', dropped: m.dropped } : null;
    }
    const snapshot = msg as Unchecked<StreamSnapshot>;
    if (type === 'snapshot' && Array.isArray(snapshot.messages)) {
        const all: unknown[] = snapshot.messages;
        const kept = all.map(compressForRuns).filter(m => m !== null);
        return kept.length === all.length && kept.every((m, i) => m === all[i]) ? msg : { ...msg, messages: kept };
    }
    return msg;
}

// ---------------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------------

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

/** The report's `latency_paired_ms.b1.threads` ({original, compressed} thread counts), or null. */
export function pairedThreads(paired: unknown): { original: number; compressed: number } | null {
    const b1 = isObj(paired) && isObj(paired.b1) ? paired.b1 : null;
    const t = b1 && isObj(b1.threads) ? b1.threads : null;
    const original = t ? num(t.original) : null;
    const compressed = t ? num(t.compressed) : null;
    return original !== null && compressed !== null ? { original, compressed } : null;
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
