import { describe, expect, it } from 'vitest';
import {
    applyServe, currentServer, describeBatching, describeFailures, emptyServe, fmtMs, fmtRate, MAX_SERVERS, parseHistogram,
    serveForRuns, serversByRecency, SERIES_CAPACITY, type ServeState,
} from '../../../extension/webview/serve';

const RUN = 'serve-digits_cnn';
const URL = 'http://127.0.0.1:8000';

/** A `serve.stats` event as server/deploy/reporting.py sends it (Batcher.snapshot() under `stats`). */
const stats = (ok: number, extra: Record<string, unknown> = {}) => ({
    window_s: 60.0, requests: ok + 2, requests_per_s: ok / 10, outcomes: { ok, timeout: 2 }, batches: 3,
    batch_size_histogram: { '1': 1, '8': 2, '16': 4 }, mean_batch_size: 7.5,
    queue_delay_ms: { p50: 1.2, p99: 2.9 }, latency_ms: { p50: 2.5, p99: 6.75 }, run_ms: { p50: 1.1, p99: 3.0 },
    totals: { ok, timeout: 2 }, queue_depth: 0, running_batches: 1, instances: 2,
    config: { batching: true, max_batch_size: 32, preferred_batch_sizes: [8, 16], max_queue_delay_us: 2000, timeout_ms: 1000.0, max_queue: 256 },
    ...extra,
});
const ev = (t: number, ok: number, interval = 1, rate = ok, extra: Record<string, unknown> = {}) => ({
    kind: 'serve.stats', t, run: RUN, rank: 0, model: 'digits_cnn', form: 'onnx', url: URL, interval_s: interval,
    rate_per_s: rate, stats: stats(ok), ...extra,
});
const samples = (events: Record<string, unknown>[], run = RUN) => ({ type: 'samples', v: 1, run, rank: 0, t: 1, samples: [], events });

function feed(s: ServeState, ...events: Record<string, unknown>[]): Set<string> {
    return applyServe(s, samples(events));
}

describe('serve model', () => {
    it('keeps a server per run and URL with its requests/s points, latency points and latest figures', () => {
        const s = emptyServe();
        const changed = feed(s, ev(100, 0, 0, 0), ev(101, 40, 1, 40), ev(102, 100, 1, 60));
        expect([...changed]).toEqual([`${RUN}|${URL}`]);
        const served = currentServer(s, null)!;
        expect(served.model).toBe('digits_cnn');
        expect(served.form).toBe('onnx');
        // the first event (no interval yet) has no rate point; every event has a latency point
        expect(served.rate.times()).toEqual([101, 102]);
        expect(served.rate.values()).toEqual([40, 60]);
        expect(served.latencyP99.pointCount()).toBe(3);
        expect(served.figures.histogram).toEqual([[1, 1], [8, 2], [16, 4]]);
        expect(served.figures.latency).toEqual({ p50: 2.5, p99: 6.75 });
        expect(served.figures.queueDelay).toEqual({ p50: 1.2, p99: 2.9 });
        expect(served.figures.totals).toEqual({ ok: 100, timeout: 2 });
        expect(served.figures.config?.preferred).toEqual([8, 16]);
    });

    it('ignores what a reconnect snapshot repeats, and events that are not figures', () => {
        const s = emptyServe();
        feed(s, ev(100, 0, 0), ev(101, 10));
        const again = applyServe(s, { type: 'snapshot', t: 5, dropped: 0, messages: [samples([ev(100, 0, 0), ev(101, 10)]), samples([ev(102, 20)])] });
        expect([...again]).toEqual([`${RUN}|${URL}`]);
        expect(currentServer(s, null)!.rate.values()).toEqual([10, 20]);
        expect(feed(s, { kind: 'serve.stats', t: 103, run: RUN, url: URL, stats: { window_s: 60 } }).size).toBe(0);  // no rate
        expect(feed(s, { kind: 'compress.step', t: 104, run: RUN }).size).toBe(0);
        expect(feed(s, ev(105, 30, 1, 10, { url: 'not a url', stats: 'x' })).size).toBe(0);
    });

    it('reads a value of the wrong type as missing, never as a number', () => {
        const s = emptyServe();
        feed(s, ev(100, 5, 1, 5, { rate_per_s: 'fast', stats: stats(5, { latency_ms: { p50: null, p99: 'NaN' }, batch_size_histogram: { x: 3, '4': -1, '2': 5 } }) }));
        const served = currentServer(s, null)!;
        expect(served.rate.values()).toEqual([null]);
        expect(served.figures.latency).toEqual({ p50: null, p99: null });
        expect(served.figures.histogram).toEqual([[2, 5]]);
    });

    it('shows the newest server unless one was chosen, and forgets the oldest past MAX_SERVERS', () => {
        const s = emptyServe();
        for (let i = 0; i <= MAX_SERVERS; i++) {
            feed(s, ev(100 + i, 1, 1, 1, { url: `http://127.0.0.1:${9000 + i}` }));
        }
        expect(s.servers.size).toBe(MAX_SERVERS);
        expect(serversByRecency(s)[0].url).toBe(`http://127.0.0.1:${9000 + MAX_SERVERS}`);
        expect([...s.servers.values()].some(x => x.url === 'http://127.0.0.1:9000')).toBe(false);
        expect(currentServer(s, `${RUN}|http://127.0.0.1:9003`)!.url).toBe('http://127.0.0.1:9003');
        expect(currentServer(s, 'gone')!.url).toBe(`http://127.0.0.1:${9000 + MAX_SERVERS}`);
    });

    it('bounds each series', () => {
        const s = emptyServe();
        for (let i = 1; i <= SERIES_CAPACITY + 5; i++) {
            feed(s, ev(i, i));
        }
        const served = currentServer(s, null)!;
        expect(served.rate.length).toBe(SERIES_CAPACITY);
        expect(served.rate.times()[0]).toBe(6);
    });

    it('keeps the serve run out of the training panels but keeps its dropped count', () => {
        expect(serveForRuns(samples([ev(1, 1)]))).toBeNull();
        expect(serveForRuns({ ...samples([ev(1, 1)]), dropped: 3 })).toEqual({ type: 'dropped', dropped: 3 });
        const train = samples([], 'train-1');
        expect(serveForRuns(train)).toBe(train);
        const snap = { type: 'snapshot', t: 1, dropped: 0, messages: [samples([ev(1, 1)]), train] };
        expect(serveForRuns(snap)).toEqual({ ...snap, messages: [train] });
    });

    it('formats figures as the section shows them', () => {
        expect(parseHistogram({ '16': 2, '1': 3 })).toEqual([[1, 3], [16, 2]]);
        expect(fmtMs(null)).toBe('—');
        expect(fmtMs(0.843)).toBe('0.84 ms');
        expect(fmtMs(12.34)).toBe('12.3 ms');
        expect(fmtMs(1250)).toBe('1.25 s');
        expect(fmtRate(312.4)).toBe('312/s');
        expect(fmtRate(4.5)).toBe('4.5/s');
        expect(fmtRate(0)).toBe('0/s');
        expect(describeFailures({ ok: 5, timeout: 1, queue_full: 3 })).toBe('3 queue full · 1 timeout');
        expect(describeFailures({ ok: 5 })).toBe('');
        const c = currentServerOf(ev(1, 1)).figures.config;
        expect(describeBatching(c)).toBe('max batch 32, queue delay 2000 µs, preferred 8,16, timeout 1000 ms, queue 256');
        expect(describeBatching(c && { ...c, batching: false })).toBe('batching off (each request alone), timeout 1000 ms');
    });
});

function currentServerOf(e: Record<string, unknown>) {
    const s = emptyServe();
    feed(s, e);
    return currentServer(s, null)!;
}
