// Past runs and the overlay of two of them: the pure part (no DOM), tested by vitest.
// The page asks the hub over its /stream connection: {"type":"query","id":N,"what":"runs"} and
// {"type":"query","id":N,"what":"run","run":ID,"fields":[...]}; replies carry the same id.
import { fmtAgo, fmtSeconds } from './model';

export interface PastRun {
    run: string;
    name: string | null;
    job: string | null;
    started: number;
    ended: number | null;
    /** null while the run goes on */
    outcome: string | null;
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
        out.push({ run, name: str(r.name), job: str(r.job), started, ended: num(r.ended), outcome: str(r.outcome) });
    }
    return out.sort((a, b) => b.started - a.started);
}

/** One line about a past run: "digits · 3 min ago · 42 s · succeeded". */
export function describeRun(r: PastRun, now: number): string {
    const bits = [r.name ?? r.run, fmtAgo(r.started, now)];
    if (r.ended !== null) {
        bits.push(fmtSeconds(r.ended - r.started));
    }
    bits.push(r.outcome ?? 'running');
    return bits.join(' · ');
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
