// The Runs panels' filter for runs that are a section's events, not a training run (compress-, diagnose-, serve-):
// their `samples` messages carry no samples, and as runs they would take over "Current run" with empty charts.
import type { StreamMessage, StreamSamples, StreamSnapshot, Unchecked } from '../src/protocol';
import { isObj, num } from './read';

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
