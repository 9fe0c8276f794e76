// The Serving section's pure logic (no DOM): the figures a running `deepdive deploy serve` sends to the hub
// about every second as `serve.stats` events (server/deploy/reporting.py), inside `samples` messages of a run
// `serve-<model name>`. Per server (its run and URL) it keeps the requests/s points over time and the latency
// p50/p99 points (bounded rings), and the latest figures: the batch-size histogram of the recent window, the
// queue delay and latency quantiles, outcomes and the batcher's settings.
// The event is the protocol's (server/protocol/hub_events.py ServeStatsEvent, generated into src/protocol.ts):
// read by its declared keys, each value checked as it is read. serveView.ts draws it.
import type {
    ServeBatching, ServeQuantiles, ServeStats, ServeStatsEvent, Unchecked,
} from '../src/protocol';
import { isObj, num, str, text } from './read';
import { eachEvent, eventsOnlyRuns } from './streamEvents';
import { Ring } from './ring';

export const RUN_PREFIX = 'serve-';
/** Points kept per series: 10 minutes at one event a second. */
export const SERIES_CAPACITY = 600;
/** Servers kept: beyond that the one heard from least recently is forgotten. */
export const MAX_SERVERS = 10;

export interface Quantiles {
    p50: number | null;
    p99: number | null;
}

export interface Batching {
    batching: boolean;
    maxBatchSize: number;
    preferred: number[];
    maxQueueDelayUs: number;
    timeoutMs: number;
    maxQueue: number;
}

export interface Figures {
    windowS: number;
    /** Requests answered ok per second over the window. */
    windowRate: number;
    requests: number;
    outcomes: Record<string, number>;
    totals: Record<string, number>;
    batches: number;
    /** [rows, batches] by rows, ascending. */
    histogram: [number, number][];
    meanBatch: number | null;
    queueDelay: Quantiles;
    latency: Quantiles;
    run: Quantiles;
    queueDepth: number;
    running: number;
    instances: number;
    config: Batching | null;
}

export interface Served {
    /** `run|url`: a server restarted on another port is another server. */
    key: string;
    run: string;
    model: string;
    form: string;
    url: string;
    /** Requests answered per second between events (the chart's points). */
    rate: Ring;
    latencyP50: Ring;
    latencyP99: Ring;
    figures: Figures;
    /** The newest event's time. */
    lastT: number;
}

export interface ServeState {
    servers: Map<string, Served>;
}

export function emptyServe(): ServeState {
    return { servers: new Map() };
}

function quantiles(x: unknown): Quantiles {
    const q = isObj(x) ? x as Unchecked<ServeQuantiles> : {};
    return { p50: num(q.p50), p99: num(q.p99) };
}

function counts(x: unknown): Record<string, number> {
    const out: Record<string, number> = {};
    if (isObj(x)) {
        for (const [k, v] of Object.entries(x)) {
            const n = num(v);
            if (n !== null && n >= 0) {
                out[k] = n;
            }
        }
    }
    return out;
}

function batching(x: unknown): Batching | null {
    if (!isObj(x)) {
        return null;
    }
    const c = x as Unchecked<ServeBatching>;
    const max = num(c.max_batch_size);
    if (max === null || typeof c.batching !== 'boolean') {
        return null;
    }
    return {
        batching: c.batching, maxBatchSize: max,
        preferred: Array.isArray(c.preferred_batch_sizes) ? c.preferred_batch_sizes.map(num).filter((n): n is number => n !== null) : [],
        maxQueueDelayUs: num(c.max_queue_delay_us) ?? 0, timeoutMs: num(c.timeout_ms) ?? 0, maxQueue: num(c.max_queue) ?? 0,
    };
}

/** The batch-size histogram as [rows, batches] pairs by rows, ascending (keys that are not whole row counts dropped). */
export function parseHistogram(x: unknown): [number, number][] {
    return Object.entries(counts(x))
        .map(([k, n]) => [Number(k), n] as [number, number])
        .filter(([rows, n]) => Number.isInteger(rows) && rows > 0 && n > 0)
        .sort((a, b) => a[0] - b[0]);
}

/** A `serve.stats` event's figures, checked; null without a window or a rate. */
export function parseFigures(x: unknown): Figures | null {
    if (!isObj(x)) {
        return null;
    }
    const s = x as Unchecked<ServeStats>;
    const windowS = num(s.window_s);
    const windowRate = num(s.requests_per_s);
    if (windowS === null || windowRate === null) {
        return null;
    }
    return {
        windowS, windowRate, requests: num(s.requests) ?? 0, outcomes: counts(s.outcomes), totals: counts(s.totals),
        batches: num(s.batches) ?? 0, histogram: parseHistogram(s.batch_size_histogram), meanBatch: num(s.mean_batch_size),
        queueDelay: quantiles(s.queue_delay_ms), latency: quantiles(s.latency_ms), run: quantiles(s.run_ms),
        queueDepth: num(s.queue_depth) ?? 0, running: num(s.running_batches) ?? 0, instances: num(s.instances) ?? 0,
        config: batching(s.config),
    };
}

function serverOf(state: ServeState, key: string, init: () => Served): Served {
    let s = state.servers.get(key);
    if (!s) {
        s = init();
        state.servers.set(key, s);
        if (state.servers.size > MAX_SERVERS) {
            const oldest = [...state.servers.values()].filter(o => o !== s).sort((a, b) => a.lastT - b.lastT)[0];
            if (oldest) {
                state.servers.delete(oldest.key);
            }
        }
    }
    return s;
}

/**
 * Applies one `serve.stats` event; returns its server's key, or null when it was ignored (not one, incomplete,
 * or not newer than the server's last: a reconnect's snapshot repeats recent history).
 */
export function applyEvent(state: ServeState, event: Record<string, unknown>, msgT = 0): string | null {
    if (event.kind !== 'serve.stats') {
        return null;
    }
    const e = event as Unchecked<ServeStatsEvent>;
    const run = text(e.run);
    const url = text(e.url);
    const t = num(e.t) ?? msgT;
    const figures = parseFigures(e.stats);
    if (!run || !url || !figures || !(t > 0)) {
        return null;
    }
    const key = `${run}|${url}`;
    const known = state.servers.get(key);
    if (known && t <= known.lastT) {
        return null;
    }
    const s = serverOf(state, key, () => ({
        key, run, url, model: text(e.model) ?? run.slice(RUN_PREFIX.length), form: str(e.form) ?? '',
        rate: new Ring(SERIES_CAPACITY), latencyP50: new Ring(SERIES_CAPACITY), latencyP99: new Ring(SERIES_CAPACITY),
        figures, lastT: -Infinity,
    }));
    const interval = num(e.interval_s) ?? 0;
    if (interval > 0) {  // the first event of a server has no interval: no rate point yet
        s.rate.push(t, num(e.rate_per_s));
    }
    s.latencyP50.push(t, figures.latency.p50);
    s.latencyP99.push(t, figures.latency.p99);
    s.figures = figures;
    s.form = str(e.form) ?? s.form;
    s.lastT = t;
    return key;
}

/** Applies one /stream message (the `serve.stats` events of `samples`, and of a snapshot's messages); returns the servers changed. */
export function applyServe(state: ServeState, msg: unknown, changed: Set<string> = new Set()): Set<string> {
    eachEvent(msg, 'serve.stats', (e, t) => {
        const key = applyEvent(state, e, t);
        if (key !== null) {
            changed.add(key);
        }
    });
    return changed;
}

/** Servers, the one heard from most recently first. */
export function serversByRecency(state: ServeState): Served[] {
    return [...state.servers.values()].sort((a, b) => b.lastT - a.lastT || a.key.localeCompare(b.key));
}

/** The server shown: the chosen one while it is known, else the most recent. */
export function currentServer(state: ServeState, chosen: string | null): Served | null {
    return (chosen !== null ? state.servers.get(chosen) : undefined) ?? serversByRecency(state)[0] ?? null;
}

/** Milliseconds as shown: `0.84 ms`, `12.3 ms`, `1.25 s`; a dash when not measured. */
export function fmtMs(ms: number | null): string {
    if (ms === null) {
        return '—';
    }
    if (ms >= 1000) {
        return `${(ms / 1000).toFixed(2)} s`;
    }
    return `${ms >= 10 ? ms.toFixed(1) : ms.toFixed(2)} ms`;
}

/** Requests per second as shown: `312/s`, `4.5/s`, `0/s`. */
export function fmtRate(x: number | null): string {
    if (x === null) {
        return '—';
    }
    return `${x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : Number(x.toFixed(2))}/s`;
}

/** The batcher's settings in one line: `max batch 32, queue delay 2000 µs, preferred 8,16` or `batching off`. */
export function describeBatching(c: Batching | null): string {
    if (!c) {
        return '';
    }
    if (!c.batching) {
        return `batching off (each request alone), timeout ${c.timeoutMs} ms`;
    }
    return `max batch ${c.maxBatchSize}, queue delay ${c.maxQueueDelayUs} µs`
        + (c.preferred.length ? `, preferred ${c.preferred.join(',')}` : '') + `, timeout ${c.timeoutMs} ms, queue ${c.maxQueue}`;
}

/** Outcomes other than ok in the window, as `3 timeout · 1 queue_full`; '' when every request was answered. */
export function describeFailures(outcomes: Record<string, number>): string {
    return Object.entries(outcomes).filter(([k, n]) => k !== 'ok' && n > 0).sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${n} ${k.replace(/_/g, ' ')}`).join(' · ');
}

/** The message for the Runs panels: `serve-` runs are this section's events (see runFilter.ts). */
export const serveForRuns = eventsOnlyRuns(RUN_PREFIX);
