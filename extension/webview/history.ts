// Past runs and the overlay of two of them: the pure part (no DOM), tested by vitest.
// The page asks the hub over its /stream connection: {"type":"query","id":N,"what":"runs"} and
// {"type":"query","id":N,"what":"run","run":ID,"fields":[...]}; replies carry the same id.
import { baseName, fmtSeconds } from './model';

/** What a past run is (server/telemetry/store.py KINDS): the list shows one kind at a time. */
export type RunKind = 'train' | 'tune' | 'compress' | 'check' | 'script';

/** The past-runs tabs, in order; training runs are the default. */
export const RUN_TABS: readonly { kind: RunKind; label: string }[] = [
    { kind: 'train', label: 'Training' },
    { kind: 'tune', label: 'Tune' },
    { kind: 'compress', label: 'Compress' },
    { kind: 'check', label: 'Deep check' },
    { kind: 'script', label: 'Scripts' },
];
const KINDS = new Set<string>(RUN_TABS.map(t => t.kind));

export interface PastRun {
    run: string;
    name: string | null;
    job: string | null;
    started: number;
    ended: number | null;
    /** null while the run goes on */
    outcome: string | null;
    kind: RunKind;
    /** The script the engine ran (its setup event's path), or null. */
    script: string | null;
}

export type Row = Record<string, unknown> & { t: number };

/** The fields an overlay asks for: the x axis (step) and what is compared. */
export const OVERLAY_FIELDS = ['step', 'loss', 'samples_per_s', 'step_time_s'] as const;

export const OVERLAYS = [
    { key: 'loss', title: 'Loss' },
    { key: 'samples_per_s', title: 'Throughput (samples/s)' },
    { key: 'step_time_s', title: 'Step time' },
] as const;

/** At most this many runs are compared at once. */
export const MAX_COMPARE = 2;

function str(x: unknown): string | null {
    return typeof x === 'string' && x ? x : null;
}

function num(x: unknown): number | null {
    return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

/** The runs of a `runs` reply, newest first; malformed entries are skipped. */
export function parseRuns(reply: unknown): PastRun[] {
    const runs = (reply as { runs?: unknown })?.runs;
    if (!Array.isArray(runs)) {
        return [];
    }
    const out: PastRun[] = [];
    for (const item of runs as unknown[]) {
        const r = (item ?? {}) as Record<string, unknown>;
        const run = str(r.run);
        const started = num(r.started);
        if (run === null || started === null) {
            continue;
        }
        // a daemon from before runs had kinds sends none: its runs are training runs (what sent samples)
        const kind = (typeof r.kind === 'string' && KINDS.has(r.kind) ? r.kind : 'train') as RunKind;
        out.push({
            run, name: str(r.name), job: str(r.job), started, ended: num(r.ended), outcome: str(r.outcome), kind,
            script: str(r.script),
        });
    }
    return out.sort((a, b) => b.started - a.started);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number): string => String(n).padStart(2, '0');

/**
 * When a run started, local time, as short as is unambiguous next to `now`: `14:02` today, `Mar 3 14:02`
 * this year, `Mar 3 2025 14:02` before.
 */
export function fmtStart(started: number, now: number): string {
    const d = new Date(started * 1000);
    const n = new Date(now * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (d.toDateString() === n.toDateString()) {
        return hm;
    }
    const day = `${MONTHS[d.getMonth()]} ${d.getDate()}`;
    return d.getFullYear() === n.getFullYear() ? `${day} ${hm}` : `${day} ${d.getFullYear()} ${hm}`;
}

/** What a run is called: its script's file name, else the job's title, else its id. */
export function runTitle(r: PastRun): string {
    return r.script ? baseName(r.script) : r.name ?? r.run;
}

/** A past run's name: "digits.py · 14:02" (script or title, and start time). */
export function runName(r: PastRun, now: number): string {
    return `${runTitle(r)} · ${fmtStart(r.started, now)}`;
}

/** The tooltip of a past run: everything its one line leaves out (job title, id, script path). */
export function runTooltip(r: PastRun): string {
    const bits = [r.name && r.script ? r.name : null, `run ${r.run}`, r.script];
    return bits.filter(Boolean).join('\n');
}

/** One line about a past run: "digits.py · 14:02 · 42 s · succeeded". */
export function describeRun(r: PastRun, now: number): string {
    const bits = [runName(r, now)];
    if (r.ended !== null) {
        bits.push(fmtSeconds(r.ended - r.started));
    }
    bits.push(r.outcome ?? 'running');
    return bits.join(' · ');
}

/** The runs of one kind (order kept). */
export function runsOfKind(runs: readonly PastRun[], kind: RunKind): PastRun[] {
    return runs.filter(r => r.kind === kind);
}

/** The tabs to show with their counts: Training always, every other kind once it has a run. */
export function runTabs(runs: readonly PastRun[]): { kind: RunKind; label: string; count: number }[] {
    return RUN_TABS.map(t => ({ ...t, count: runsOfKind(runs, t.kind).length }))
        .filter(t => t.kind === 'train' || t.count > 0);
}

/**
 * The selection after the user toggles `run`: a selected run is removed; a new one is added, and
 * when that makes more than MAX_COMPARE the oldest pick is dropped.
 */
export function toggleCompare(selected: readonly string[], run: string): string[] {
    if (selected.includes(run)) {
        return selected.filter(r => r !== run);
    }
    return [...selected, run].slice(-MAX_COMPARE);
}

/**
 * uPlot data for `key` of several runs on one step axis: x is the union of the steps (sorted), and
 * each run has its value at that step or null. Rows without a numeric step are skipped; several rows
 * of one step (the store's aggregates) keep the last.
 */
export function overlay(runs: readonly Row[][], key: string): [number[], ...(number | null)[][]] {
    const maps = runs.map(rows => {
        const m = new Map<number, number | null>();
        for (const row of rows) {
            const step = num(row.step);
            if (step !== null) {
                m.set(step, num(row[key]));
            }
        }
        return m;
    });
    const xs = [...new Set(maps.flatMap(m => [...m.keys()]))].sort((a, b) => a - b);
    return [xs, ...maps.map(m => xs.map(x => m.get(x) ?? null))];
}

/** Points with a value in each run's series of `overlay` data. */
export function overlayPoints(data: [number[], ...(number | null)[][]]): number[] {
    return data.slice(1).map(series => (series as (number | null)[]).filter(v => v !== null).length);
}

/** Matches replies to queries by id; `send` puts a query on the socket. No DOM, no timers. */
export class Queries {
    private next = 1;
    private readonly waiting = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();

    constructor(private readonly send: (text: string) => boolean) {}

    ask(query: Record<string, unknown>): Promise<Record<string, unknown>> {
        const id = this.next++;
        return new Promise((resolve, reject) => {
            this.waiting.set(id, { resolve, reject });
            if (!this.send(JSON.stringify({ ...query, type: 'query', id }))) {
                this.waiting.delete(id);
                reject(new Error('not connected to the daemon'));
            }
        });
    }

    /** True when `msg` was a reply (consumed here). */
    handle(msg: unknown): boolean {
        const m = msg as { type?: unknown; id?: unknown; ok?: unknown; error?: unknown };
        if (!m || m.type !== 'reply') {
            return false;
        }
        const w = typeof m.id === 'number' ? this.waiting.get(m.id) : undefined;
        if (w) {
            this.waiting.delete(m.id as number);
            if (m.ok === true) {
                w.resolve(m);
            } else {
                w.reject(new Error(typeof m.error === 'string' ? m.error : 'the query failed'));
            }
        }
        return true;
    }

    /** The connection closed: every open query fails (the page asks again after reconnecting). */
    failAll(why: string): void {
        for (const w of this.waiting.values()) {
            w.reject(new Error(why));
        }
        this.waiting.clear();
    }
}
