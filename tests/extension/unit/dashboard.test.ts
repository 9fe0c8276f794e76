import { describe, expect, it } from 'vitest';
import {
    BACKOFF_BASE_MS, BACKOFF_MAX_MS, MAX_RUNS, RUN_CAPACITY, Ring, align, apply, backoffDelay, connectionLabel, currentRun,
    emptyState, fmtAgo, fmtBytes, fmtMib, fmtNum, fmtPct, fmtRate, fmtSeconds, runsByRecency, streamUrl,
} from '../../../extension/webview/model';

describe('Ring', () => {
    it('keeps the newest points up to its capacity, oldest first', () => {
        const r = new Ring(3);
        for (let i = 1; i <= 5; i++) {
            r.push(i, i * 10);
        }
        expect(r.length).toBe(3);
        expect(r.times()).toEqual([3, 4, 5]);
        expect(r.values()).toEqual([30, 40, 50]);
        expect(r.last()).toEqual({ t: 5, v: 50 });
    });

    it('stores non-numbers as gaps that do not count as points', () => {
        const r = new Ring(4);
        r.push(1, 1);
        r.push(2, null);
        r.push(3, NaN);
        r.push(4, undefined);
        expect(r.values()).toEqual([1, null, null, null]);
        expect(r.pointCount()).toBe(1);
        expect(r.last()).toEqual({ t: 1, v: 1 });
        r.clear();
        expect(r.length).toBe(0);
        expect(r.last()).toBeNull();
    });

    it('refuses a capacity below 1', () => {
        expect(() => new Ring(0)).toThrow(RangeError);
    });
});

describe('align', () => {
    it('merges the times of several rings, null where one has no point', () => {
        const a = new Ring(5);
        const b = new Ring(5);
        a.push(1, 10);
        a.push(3, 30);
        b.push(2, 2);
        b.push(3, 3);
        expect(align([a, b])).toEqual([[1, 2, 3], [10, null, 30], [null, 2, 3]]);
    });
});

const machine = (t: number, extra: Record<string, unknown> = {}) => ({
    type: 'machine', t,
    gpus: [{ index: 0, name: 'H200', util_gpu_pct: 50, mem_used_mib: 1000, mem_total_mib: 140000, power_w: 300,
        power_limit_w: 700, temp_c: 50, clock_sm_mhz: 1980, clock_mem_mhz: 2619, throttle_reasons: ['gpu_idle', 'sw_power_cap'] }],
    gpu_reason: null,
    host: { cpu_pct: 12.5, cpus: 16, mem_used_mib: 2048, mem_total_mib: 8192, mem_pct: 25, disk_read_b_s: 0,
        disk_write_b_s: 100, net_rx_b_s: null, net_tx_b_s: 5 },
    jobs: {},
    ...extra,
});

const samples = (run: string, rank: number, steps: number[], extra: Record<string, unknown> = {}) => ({
    type: 'samples', run, rank, seq: 0, t: steps.at(-1)! + 0.5, dropped: 0, producer_dropped: 0, events: [],
    samples: steps.map(step => ({ t: step, step, step_time_s: 0.1, samples_per_s: 640, loss: 1 / (step + 1), ...extra })),
});

describe('apply', () => {
    it('builds per-run series from samples messages and remembers the last step', () => {
        const s = emptyState();
        const change = apply(s, samples('r1', 0, [0, 1, 2]));
        expect([...change.runs]).toEqual(['r1']);
        const run = s.runs.get('r1')!;
        expect(run.lastStep).toBe(2);
        expect(run.series.get('loss')!.values()).toEqual([1, 0.5, 1 / 3]);
        expect(run.series.get('step_time_s')!.times()).toEqual([0, 1, 2]);
        expect(run.series.has('comm_bytes_sent')).toBe(false);
    });

    it('charts the lowest rank only, but counts every rank', () => {
        const s = emptyState();
        apply(s, samples('r', 1, [0, 1]));
        apply(s, samples('r', 0, [0, 1, 2]));
        apply(s, samples('r', 1, [2, 3]));
        const run = s.runs.get('r')!;
        expect(run.rank).toBe(0);
        expect([...run.ranks].sort()).toEqual([0, 1]);
        expect(run.series.get('loss')!.length).toBe(3);  // rank 1's points were dropped when rank 0 appeared
        expect(run.samples).toBe(7);
    });

    it('unpacks a snapshot and counts what this subscriber lost', () => {
        const s = emptyState();
        const change = apply(s, { type: 'snapshot', t: 10, dropped: 2, messages: [samples('a', 0, [0]), machine(1), { type: 'verdict', run: 'a', kind: 'input-bound', sentence: 'Waits on data.', fix: 'More workers.', evidence: { data_wait_share: 0.6 } }] });
        expect(change.machine).toBe(true);
        expect(change.runs.has('a')).toBe(true);
        expect(s.runs.get('a')!.verdict).toMatchObject({ kind: 'input-bound', sentence: 'Waits on data.', fix: 'More workers.' });
        apply(s, { ...samples('a', 0, [1]), dropped: 3 });
        expect(s.dropped).toBe(5);
    });

    it('keeps GPU series and drops idle from the throttle reasons', () => {
        const s = emptyState();
        apply(s, machine(1));
        apply(s, machine(2));
        const gpu = s.gpus.get(0)!;
        expect(gpu.name).toBe('H200');
        expect(gpu.memTotalMib).toBe(140000);
        expect(gpu.throttle).toEqual(['sw_power_cap']);
        expect(gpu.series.get('util_gpu_pct')!.times()).toEqual([1, 2]);
        expect(s.host.get('cpu_pct')!.values()).toEqual([12.5, 12.5]);
        expect(s.host.get('net_rx_b_s')!.pointCount()).toBe(0);
        expect(s.hostInfo).toEqual({ cpus: 16, memTotalMib: 8192 });
        expect(s.gpuReason).toBeNull();
    });

    it('says why there are no GPUs, never zeros', () => {
        const s = emptyState();
        apply(s, machine(1));
        apply(s, machine(2, { gpus: null, gpu_reason: 'no NVIDIA GPU: NVML library not found' }));
        expect(s.gpus.size).toBe(0);
        expect(s.gpuReason).toBe('no NVIDIA GPU: NVML library not found');
        apply(s, machine(3, { gpus: null, gpu_reason: null }));
        expect(s.gpuReason).toMatch(/unavailable/);
        apply(s, machine(4, { gpus: [], gpu_reason: null }));
        expect(s.gpuReason).toMatch(/no GPU/);
    });

    it('ignores junk without throwing', () => {
        const s = emptyState();
        for (const m of [null, 42, 'x', [], { type: 'samples' }, { type: 'samples', run: 'r', samples: [null, 3] }, { type: 'verdict', run: 'r' }, { type: 'other' }]) {
            apply(s, m);
        }
        expect(s.runs.get('r')!.samples).toBe(0);
        expect(s.runs.get('r')!.verdict).toBeNull();
    });

    it('bounds memory: series capacity and the number of runs', () => {
        const s = emptyState();
        const steps = Array.from({ length: RUN_CAPACITY + 100 }, (_, i) => i);
        apply(s, samples('big', 0, steps));
        expect(s.runs.get('big')!.series.get('loss')!.length).toBe(RUN_CAPACITY);
        for (let i = 0; i < MAX_RUNS + 5; i++) {
            apply(s, samples(`run${i}`, 0, [RUN_CAPACITY + 1000 + i]));
        }
        expect(s.runs.size).toBe(MAX_RUNS);
        expect(s.runs.has('big')).toBe(false);  // heard from least recently
    });
});

describe('currentRun / runsByRecency', () => {
    it('follows the latest run unless one was chosen', () => {
        const s = emptyState();
        expect(currentRun(s, null)).toBeNull();
        apply(s, samples('old', 0, [1]));
        apply(s, samples('new', 0, [5]));
        expect(currentRun(s, null)!.id).toBe('new');
        expect(currentRun(s, 'old')!.id).toBe('old');
        expect(currentRun(s, 'gone')!.id).toBe('new');
        expect(runsByRecency(s).map(r => r.id)).toEqual(['new', 'old']);
    });
});

describe('streamUrl', () => {
    it('prefers DEEPDIVE_CONFIG.streamUrl', () => {
        expect(streamUrl({ protocol: 'http:', host: 'h:1', search: '?token=a' }, { streamUrl: 'ws://x/stream?token=b' })).toBe('ws://x/stream?token=b');
    });

    it('derives /stream on the same host with the page token', () => {
        expect(streamUrl({ protocol: 'http:', host: '127.0.0.1:8000', search: '?token=a-b_c' })).toBe('ws://127.0.0.1:8000/stream?token=a-b_c');
        expect(streamUrl({ protocol: 'https:', host: 'h', search: '?x=1&token=a%2Bb' }, {})).toBe('wss://h/stream?token=a%2Bb');
    });

    it('leaves the token to the cookie when the page URL has none', () => {
        expect(streamUrl({ protocol: 'http:', host: 'h:2', search: '' }, null)).toBe('ws://h:2/stream');
    });
});

describe('backoffDelay', () => {
    it('grows exponentially with jitter between half and the whole of the step', () => {
        expect(backoffDelay(0, 0)).toBe(BACKOFF_BASE_MS / 2);
        expect(backoffDelay(0, 0.999999)).toBe(BACKOFF_BASE_MS);
        expect(backoffDelay(3, 0)).toBe((BACKOFF_BASE_MS * 8) / 2);
        for (let a = 0; a < 8; a++) {
            expect(backoffDelay(a + 1, 0)).toBeGreaterThanOrEqual(backoffDelay(a, 0));
        }
    });

    it('is capped, even for huge attempt numbers', () => {
        for (const a of [10, 50, 1000, Infinity]) {
            expect(backoffDelay(a, 1)).toBe(BACKOFF_MAX_MS);
            expect(backoffDelay(a, 0)).toBe(BACKOFF_MAX_MS / 2);
        }
    });
});

describe('formatting', () => {
    it('numbers', () => {
        expect(fmtNum(null)).toBe('—');
        expect(fmtNum(NaN)).toBe('—');
        expect(fmtNum(0)).toBe('0');
        expect(fmtNum(0.012345)).toBe('0.0123');
        expect(fmtNum(12.345)).toBe('12.3');
        expect(fmtNum(4567.8)).toBe('4568');
        expect(fmtNum(1.5e9)).toBe('1.50e+9');
    });

    it('bytes, MiB and rates', () => {
        expect(fmtBytes(512)).toBe('512 B');
        expect(fmtBytes(1536)).toBe('1.50 KiB');
        expect(fmtBytes(25 * 1024 * 1024)).toBe('25.0 MiB');
        expect(fmtBytes(-2048)).toBe('-2.00 KiB');
        expect(fmtMib(2048)).toBe('2.00 GiB');
        expect(fmtMib(null)).toBe('—');
        expect(fmtRate(1024)).toBe('1.00 KiB/s');
        expect(fmtRate(undefined)).toBe('—');
    });

    it('durations, percentages and ages', () => {
        expect(fmtSeconds(0.0123)).toBe('12.3 ms');
        expect(fmtSeconds(4.2)).toBe('4.2 s');
        expect(fmtSeconds(125)).toBe('2 min 5 s');
        expect(fmtPct(5.55)).toBe('5.5%');
        expect(fmtPct(97.6)).toBe('98%');
        expect(fmtAgo(100, 101)).toBe('now');
        expect(fmtAgo(100, 130)).toBe('30 s ago');
        expect(fmtAgo(0, 7200)).toBe('2 h ago');
    });

    it('connection labels', () => {
        expect(connectionLabel('open', null, null)).toBe('live');
        expect(connectionLabel('reconnecting', 2500, 'code 1006')).toBe('disconnected (code 1006); retrying in 2.5 s');
        expect(connectionLabel('connecting', null, null)).toMatch(/^connecting/);
    });
});

describe('reconnect', () => {
    it('a snapshot repeating history adds no duplicate points', () => {
        const s = emptyState();
        apply(s, samples('r', 0, [0, 1, 2]));
        apply(s, machine(1));
        apply(s, machine(2));
        // the new connection's snapshot: the same history plus what came while disconnected
        apply(s, { type: 'snapshot', t: 9, dropped: 0, messages: [samples('r', 0, [0, 1, 2]), machine(1), machine(2), samples('r', 0, [3, 4]), machine(3)] });
        const run = s.runs.get('r')!;
        expect(run.series.get('loss')!.times()).toEqual([0, 1, 2, 3, 4]);
        expect(run.samples).toBe(5);
        expect(run.lastStep).toBe(4);
        expect(s.host.get('cpu_pct')!.times()).toEqual([1, 2, 3]);
        expect(s.gpus.get(0)!.series.get('util_gpu_pct')!.length).toBe(3);
    });
});
