// The dashboard's pure logic (no DOM): the state the /stream messages build (runs, GPUs, host) and the
// queries the Runs and Devices panels ask of it. dashboard.ts renders this state; unit tests drive it directly.
// The messages are the protocol's (server/protocol/hub.py, generated into src/protocol.ts): read by their
// declared keys, each value checked as it is read.
// The ring buffers (ring.ts), the stream URL and reconnect backoff (reconnect.ts) and number formatting
// (format.ts) live in their own modules; this one re-exports them, so importers keep one path.
import type {
    GpuSample, HostSample, MachineMessage, SetupEvent, StreamMessage, StreamSamples, StreamSnapshot, Unchecked, VerdictMessage,
} from '../src/protocol';
import { fmtWindow } from './format';
import { isObj, num, text } from './read';
import { Ring } from './ring';

export { Ring, align } from './ring';
export {
    BACKOFF_BASE_MS, BACKOFF_MAX_MS, backoffDelay, connectionLabel, streamUrl, type Config, type ConnState,
} from './reconnect';
export { fmtAgo, fmtBytes, fmtMib, fmtNum, fmtPct, fmtRate, fmtSeconds, fmtWindow } from './format';

export const RUN_CAPACITY = 3000;
export const MACHINE_CAPACITY = 600;
export const MAX_RUNS = 50;

/** The engine sample fields charted per run (see server/engine/reporter.py). */
export const RUN_FIELDS = [
    'step_time_s', 'data_wait_s', 'samples_per_s', 'loss', 'loss_scale', 'skipped_steps',
    'comm_bytes_sent', 'comm_bytes_uncompressed', 'comm_time_s', 'comm_exposed_s',
    'mem_allocated_mib', 'mem_reserved_mib', 'mem_peak_mib', 'mem_rss_mib',
] as const;

/** The machine sample's GPU fields charted (keys of the protocol's GpuSample). */
export const GPU_FIELDS = [
    'util_gpu_pct', 'util_mem_pct', 'mem_used_mib', 'power_w', 'temp_c', 'clock_sm_mhz', 'clock_mem_mhz',
] as const satisfies readonly (keyof GpuSample)[];

/** The machine sample's host fields charted (keys of the protocol's HostSample). */
export const HOST_FIELDS = [
    'cpu_pct', 'mem_pct', 'mem_used_mib', 'disk_read_b_s', 'disk_write_b_s', 'net_rx_b_s', 'net_tx_b_s',
] as const satisfies readonly (keyof HostSample)[];

export interface Verdict {
    kind: string;
    sentence: string;
    fix: string;
    evidence: Record<string, unknown> | null;
    t: number;
}

export interface RunState {
    id: string;
    series: Map<string, Ring>;
    /** The rank whose samples are charted: the lowest one seen. */
    rank: number | null;
    lastStep: number | null;
    lastT: number;
    ranks: Set<number>;
    /** Newest sample time per rank: older or equal ones are repeats (a reconnect's snapshot) and skipped. */
    rankT: Map<number, number>;
    samples: number;
    dropped: number;
    precision: string | null;
    /** Seconds of steps the charted rank's newest `samples_per_s` covers (`samples_per_s_window_s`). */
    throughputWindowS: number | null;
    verdict: Verdict | null;
    events: { t: number; text: string }[];
    /** What the engine's rank-0 `setup` event said (null until it is seen: a page may join late). */
    setup: RunSetup | null;
}

/** The facts of a run's `setup` event the page shows: its script, device, precision and processes. */
export interface RunSetup {
    script: string | null;
    device: string | null;
    precision: string | null;
    worldSize: number | null;
}

export interface GpuState {
    index: number;
    name: string;
    memTotalMib: number | null;
    powerLimitW: number | null;
    throttle: string[];
    series: Map<string, Ring>;
}

export interface State {
    runs: Map<string, RunState>;
    gpus: Map<number, GpuState>;
    gpuReason: string | null;
    /** Whether a machine sample arrived at all (before that, the Devices panel says it is waiting). */
    machineSeen: boolean;
    host: Map<string, Ring>;
    hostInfo: { cpus: number | null; memTotalMib: number | null };
    lastMachineT: number;
    /** Entries this subscriber lost to its full queue at the hub (the hub's `dropped`). */
    dropped: number;
    messages: number;
}

export function emptyState(): State {
    return {
        runs: new Map(), gpus: new Map(), gpuReason: null, machineSeen: false, host: new Map(),
        hostInfo: { cpus: null, memTotalMib: null }, lastMachineT: 0, dropped: 0, messages: 0,
    };
}

function ring(series: Map<string, Ring>, key: string, capacity: number): Ring {
    let r = series.get(key);
    if (!r) {
        r = new Ring(capacity);
        series.set(key, r);
    }
    return r;
}

function runOf(state: State, id: string): RunState {
    let run = state.runs.get(id);
    if (!run) {
        run = {
            id, series: new Map(), rank: null, lastStep: null, lastT: 0, ranks: new Set(), rankT: new Map(), samples: 0, dropped: 0,
            precision: null, throughputWindowS: null, verdict: null, events: [], setup: null,
        };
        state.runs.set(id, run);
        if (state.runs.size > MAX_RUNS) {  // forget the run heard from least recently
            let oldest: RunState | null = null;
            for (const r of state.runs.values()) {
                if (r !== run && (!oldest || r.lastT < oldest.lastT)) {
                    oldest = r;
                }
            }
            if (oldest) {
                state.runs.delete(oldest.id);
            }
        }
    }
    return run;
}

/** Which parts of the page a message changed. */
export interface Change {
    runs: Set<string>;
    machine: boolean;
}

export function noChange(): Change {
    return { runs: new Set(), machine: false };
}

/**
 * Applies one /stream message (snapshot, samples, machine, verdict; others are ignored) to `state`.
 * Returns what changed, so the renderer redraws only that.
 */
export function apply(state: State, msg: unknown, change: Change = noChange()): Change {
    if (!isObj(msg)) {
        return change;
    }
    state.messages++;
    const dropped = num(msg.dropped);
    if (dropped && msg.type !== 'snapshot') {
        state.dropped += dropped;
    }
    switch (msg.type as StreamMessage['type']) {
        case 'snapshot': {
            const snapshot = msg as Unchecked<StreamSnapshot>;
            if (dropped) {
                state.dropped += dropped;
            }
            if (Array.isArray(snapshot.messages)) {
                for (const m of snapshot.messages) {
                    apply(state, m, change);
                }
            }
            break;
        }
        case 'samples':
            applySamples(state, msg, change);
            break;
        case 'machine':
            applyMachine(state, msg);
            change.machine = true;
            break;
        case 'verdict': {
            const v = msg as Unchecked<VerdictMessage>;
            if (typeof v.run === 'string' && typeof v.sentence === 'string') {
                const run = runOf(state, v.run);
                run.verdict = {
                    kind: typeof v.kind === 'string' ? v.kind : '',
                    sentence: v.sentence,
                    fix: typeof v.fix === 'string' ? v.fix : '',
                    evidence: isObj(v.evidence) ? v.evidence : null,
                    t: num(v.t) ?? 0,
                };
                change.runs.add(run.id);
            }
            break;
        }
        default:
            break;
    }
    return change;
}

function applySamples(state: State, msg: Unchecked<StreamSamples>, change: Change): void {
    if (typeof msg.run !== 'string') {
        return;
    }
    const run = runOf(state, msg.run);
    const rank = num(msg.rank) ?? 0;
    run.ranks.add(rank);
    run.dropped += (num(msg.producer_dropped) ?? 0);
    if (run.rank === null || rank < run.rank) {
        if (run.rank !== null) {  // a lower rank appeared: chart it from now on
            for (const r of run.series.values()) {
                r.clear();
            }
        }
        run.rank = rank;
    }
    const msgT = num(msg.t) ?? 0;
    if (Array.isArray(msg.samples)) {
        for (const s of msg.samples) {
            if (!isObj(s)) {
                continue;
            }
            const t = num(s.t) ?? msgT;
            if (t <= (run.rankT.get(rank) ?? -Infinity)) {
                continue;  // already seen (the snapshot after a reconnect repeats recent history)
            }
            run.rankT.set(rank, t);
            run.samples++;
            run.lastT = Math.max(run.lastT, t);
            if (rank !== run.rank) {
                continue;
            }
            const step = num(s.step);
            if (step !== null) {
                run.lastStep = step;
            }
            if (typeof s.precision === 'string') {
                run.precision = s.precision;
            }
            if ('samples_per_s' in s) {
                run.throughputWindowS = num(s.samples_per_s_window_s);
            }
            for (const key of RUN_FIELDS) {
                if (key in s) {
                    ring(run.series, key, RUN_CAPACITY).push(t, num(s[key]));
                }
            }
        }
    }
    if (Array.isArray(msg.events)) {
        const newest = run.events.at(-1)?.t ?? -Infinity;
        for (const e of msg.events) {
            if (isObj(e) && e.kind === ('setup' satisfies SetupEvent['kind']) && rank === run.rank) {
                run.setup = setupOf(e);
            }
            if (isObj(e) && (num(e.t) ?? msgT) > newest) {
                const text = typeof e.message === 'string' ? e.message : typeof e.kind === 'string' ? e.kind
                    : typeof e.type === 'string' ? e.type : JSON.stringify(e).slice(0, 200);
                run.events.push({ t: num(e.t) ?? msgT, text });
            }
        }
        if (run.events.length > 20) {
            run.events.splice(0, run.events.length - 20);
        }
    }
    run.lastT = Math.max(run.lastT, msgT);
    change.runs.add(run.id);
}

function setupOf(e: Unchecked<SetupEvent>): RunSetup {
    return { script: text(e.script), device: text(e.device), precision: text(e.precision), worldSize: num(e.world_size) };
}

/** The file name of a script path (either separator): `digits.py` of `/home/me/digits.py`. */
export function baseName(path: string): string {
    return path.split(/[\\/]/).filter(Boolean).at(-1) ?? path;
}

function applyMachine(state: State, msg: Unchecked<MachineMessage>): void {
    const t = num(msg.t) ?? 0;
    if (state.machineSeen && t <= state.lastMachineT) {
        return;  // already seen (the snapshot after a reconnect repeats recent history)
    }
    state.machineSeen = true;
    state.lastMachineT = Math.max(state.lastMachineT, t);
    if (Array.isArray(msg.gpus)) {
        state.gpuReason = msg.gpus.length === 0 && typeof msg.gpu_reason === 'string' ? msg.gpu_reason : null;
        if (msg.gpus.length === 0 && !state.gpuReason) {
            state.gpuReason = 'the machine sampler reports no GPU';
        }
        const seen = new Set<number>();
        for (const item of msg.gpus as unknown[]) {
            if (!isObj(item)) {
                continue;
            }
            const g = item as Unchecked<GpuSample>;
            const index = num(g.index) ?? seen.size;
            seen.add(index);
            let gpu = state.gpus.get(index);
            if (!gpu) {
                gpu = { index, name: '', memTotalMib: null, powerLimitW: null, throttle: [], series: new Map() };
                state.gpus.set(index, gpu);
            }
            gpu.name = typeof g.name === 'string' ? g.name : `GPU ${index}`;
            gpu.memTotalMib = num(g.mem_total_mib);
            gpu.powerLimitW = num(g.power_limit_w);
            gpu.throttle = Array.isArray(g.throttle_reasons)
                ? g.throttle_reasons.filter((x): x is string => typeof x === 'string' && x !== 'gpu_idle') : [];
            for (const key of GPU_FIELDS) {
                ring(gpu.series, key, MACHINE_CAPACITY).push(t, num(g[key]));
            }
        }
        for (const index of [...state.gpus.keys()]) {
            if (!seen.has(index)) {
                state.gpus.delete(index);
            }
        }
    } else {
        state.gpus.clear();
        state.gpuReason = typeof msg.gpu_reason === 'string' && msg.gpu_reason
            ? msg.gpu_reason : 'GPU telemetry is unavailable (no reason given)';
    }
    if (isObj(msg.host)) {
        const h = msg.host as Unchecked<HostSample>;
        state.hostInfo = { cpus: num(h.cpus), memTotalMib: num(h.mem_total_mib) };
        for (const key of HOST_FIELDS) {
            ring(state.host, key, MACHINE_CAPACITY).push(t, num(h[key]));
        }
    }
}

/** The run the "Current run" panel shows: the chosen one if it is still known, else the latest heard from. */
export function currentRun(state: State, chosen: string | null): RunState | null {
    if (chosen && state.runs.has(chosen)) {
        return state.runs.get(chosen)!;
    }
    let best: RunState | null = null;
    for (const r of state.runs.values()) {
        if (!best || r.lastT > best.lastT) {
            best = r;
        }
    }
    return best;
}

/** Runs newest first. */
export function runsByRecency(state: State): RunState[] {
    return [...state.runs.values()].sort((a, b) => b.lastT - a.lastT);
}

/**
 * What a run's `samples_per_s` is, as the engine defines it (server/throughput.py `label`, the
 * status bar's and the terminal's wording): `samples/s over the last 10 s, all ranks`.
 */
export function throughputLabel(run: RunState): string {
    const w = run.throughputWindowS;
    return w !== null && w > 0 ? `samples/s over the last ${fmtWindow(w)}, all ranks` : 'samples/s, all ranks';
}
