// What the dashboard's sections that live on hub events (Compression, Diagnosis, Serving) share: walking a /stream
// message's events, and the Runs panels' filter for their runs (compress-, diagnose-, serve-), which are a
// section's events, not training runs: their `samples` messages carry no samples, and as runs they would take
// over "Current run" with empty charts.
import type { StreamMessage, StreamSamples, StreamSnapshot, Unchecked } from '../src/protocol';
import { isObj, num, text } from './read';

/**
 * The filter for runs named `${prefix}…`: a message for the Runs panels becomes null for a `samples` message of such
 * a run that carries no samples, only its `dropped` count when it has one; a snapshot without such messages;
 * anything else unchanged (the same object, so an unchanged snapshot stays the same object too).
 */
export function eventsOnlyRuns(prefix: string): (msg: unknown) => unknown {
    const filter = (msg: unknown): unknown => {
        if (!isObj(msg)) {
            return msg;
        }
        const type = msg.type as StreamMessage['type'];
        if (type === 'samples') {
            const m = msg as Unchecked<StreamSamples>;
            const only = typeof m.run === 'string' && m.run.startsWith(prefix)
                && (!Array.isArray(m.samples) || m.samples.length === 0);
            if (!only) {
                return msg;
            }
            return num(m.dropped) ? { type: 'dropped', dropped: m.dropped } : null;
        }
        const snapshot = msg as Unchecked<StreamSnapshot>;
        if (type === 'snapshot' && Array.isArray(snapshot.messages)) {
            const all: unknown[] = snapshot.messages;
            const kept = all.map(filter).filter(m => m !== null);
            return kept.length === all.length && kept.every((m, i) => m === all[i]) ? msg : { ...msg, messages: kept };
        }
        return msg;
    };
    return filter;
}

/**
 * Calls `visit(event, t, run)` for each event of `prefix` (e.g. `serve.`) in a /stream message: the events of a
 * `samples` message (`t`: its time, `run`: its run id, or null), and those of each message of a snapshot, in order.
 */
export function eachEvent(msg: unknown, prefix: string,
                          visit: (event: Record<string, unknown>, t: number, run: string | null) => void): void {
    if (!isObj(msg)) {
        return;
    }
    const type = msg.type as StreamMessage['type'];
    const snapshot = msg as Unchecked<StreamSnapshot>;
    const samples = msg as Unchecked<StreamSamples>;
    if (type === 'snapshot' && Array.isArray(snapshot.messages)) {
        for (const m of snapshot.messages) {
            eachEvent(m, prefix, visit);
        }
    } else if (type === 'samples' && Array.isArray(samples.events)) {
        const t = num(samples.t) ?? 0;
        const run = text(samples.run);
        for (const e of samples.events) {
            if (isObj(e) && typeof e.kind === 'string' && e.kind.startsWith(prefix)) {
                visit(e, t, run);
            }
        }
    }
}
