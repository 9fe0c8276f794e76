// The Compression view's pure logic (no DOM): the models `deepdive compress` streams to the hub as
// `compress.*` events inside `samples` messages (run id `compress-<model stem>`): the step it is on
// (`compress.progress`), each step's measured row (`compress.step`) and the final report
// (`compress.report`, whose rows replace the live ones). Per model only the latest run is kept; each
// step is compared with the original (size, parameters, latency, accuracy). compressView.ts renders it.
// The events are the protocol's (server/protocol/hub_events.py, generated into src/protocol.ts): read by
// their declared keys, each value checked as it is read.
// The queries (compressQueries.ts), the formatting (compressFormat.ts) and the state's types
// (compressTypes.ts) live in their own modules; this one re-exports them, so importers keep one path.
import {
    CompressOutputs, CompressProgressEvent, CompressReportEvent, CompressStepRow, CompressSummary,
    HubEvent, LatencyFigures, Unchecked,
} from '../src/protocol';
import type { CompressedModel, CompressState, Latency, StepRow } from './compressTypes';
import { isObj, num, text } from './read';
import { eachEvent, eventsOnlyRuns } from './streamEvents';

export type { CompressedModel, CompressState, Latency, Live, ReportInfo, StepRow, Summary } from './compressTypes';
export {
    BAR_METRICS, MAX_SCALE, STEP_ORDER, barGroups, currentModel, modelsByRecency, pairedNote, ratios, stepsOf, summaryOf,
    type Bar, type BarGroup, type BarMetric, type Ratio,
} from './compressQueries';
export {
    describeLive, describeSummary, fmtAccuracy, fmtCount, fmtLatency, fmtMs, fmtPoints, fmtRatio, fmtSizeMb, fmtSpeed,
    fmtVsOriginal,
} from './compressFormat';

/** Models kept: beyond that the one heard from least recently is forgotten. */
export const MAX_MODELS = 20;
export const RUN_PREFIX = 'compress-';

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
    const step = text(x.step);
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
    eachEvent(msg, 'compress.', (e, t, run) => {
        const id = applyEvent(state, e, run, t);
        if (id !== null) {
            changed.add(id);
        }
    });
    return changed;
}

/** Applies one `compress.*` event; returns its model's run id, or null when it was ignored. */
export function applyEvent(state: CompressState, event: Record<string, unknown>, run: string | null = null, msgT = 0): string | null {
    const kind = event.kind as HubEvent['kind'];
    const id = text(event.run) ?? run;
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
            const step = text(e.step);
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
                target: text(e.target), threads: num(e.threads), eval: text(e.eval),
                summary: {
                    sizeRatio: num(s.size_ratio), paramsRatio: num(s.params_ratio), speedupB1: num(s.speedup_b1),
                    speedupB32: num(s.speedup_b32), accuracyDropPoints: num(s.accuracy_drop_points),
                    threadsB1: pairedThreads(s.latency_paired_ms),
                },
                outputs: { model: text(o.model), json: text(o.json), markdown: text(o.markdown) },
                t,
            };
            m.path = text(e.model) ?? m.path;
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

/** The message for the Runs panels: `compress-` runs are this section's events (see runFilter.ts). */
export const compressForRuns = eventsOnlyRuns(RUN_PREFIX);

/** The report's `latency_paired_ms.b1.threads` ({original, compressed} thread counts), or null. */
export function pairedThreads(paired: unknown): { original: number; compressed: number } | null {
    const b1 = isObj(paired) && isObj(paired.b1) ? paired.b1 : null;
    const t = b1 && isObj(b1.threads) ? b1.threads : null;
    const original = t ? num(t.original) : null;
    const compressed = t ? num(t.compressed) : null;
    return original !== null && compressed !== null ? { original, compressed } : null;
}
