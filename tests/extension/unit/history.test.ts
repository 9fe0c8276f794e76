import { describe, expect, it } from 'vitest';
import { describeRun, MAX_COMPARE, overlay, overlayPoints, parseRuns, Queries, toggleCompare } from '../../../extension/webview/history';

describe('parseRuns', () => {
    it('keeps well-formed runs, newest first, and skips the rest', () => {
        const runs = parseRuns({
            runs: [
                { run: 'a', name: 'digits', job: 'a', started: 100, ended: 142, outcome: 'succeeded' },
                { run: 'b', name: null, job: null, started: 200, ended: null, outcome: null },
                { run: '', started: 1 },
                { name: 'no id', started: 3 },
                null,
                { run: 'c', started: 'yesterday' },
            ],
        });
        expect(runs.map(r => r.run)).toEqual(['b', 'a']);
        expect(runs[1]).toEqual({ run: 'a', name: 'digits', job: 'a', started: 100, ended: 142, outcome: 'succeeded', kind: 'train', script: null });
        expect(parseRuns({})).toEqual([]);
        expect(parseRuns(null)).toEqual([]);
    });
});

describe('describeRun', () => {
    it('names the run, when it started, how long it took and how it ended', () => {
        const line = describeRun({ run: 'a', name: 'digits', job: null, started: 1000, ended: 1042, outcome: 'failed', kind: 'train', script: null }, 1000 + 180);
        expect(line).toMatch(/^digits · .+ · 42(\.0)? ?s · failed$/);
        expect(describeRun({ run: 'r1', name: null, job: null, started: 10, ended: null, outcome: null, kind: 'train', script: null }, 20)).toMatch(/^r1 · .+ · running$/);
    });
});

describe('toggleCompare', () => {
    it('adds, removes, and keeps at most two runs, dropping the oldest pick', () => {
        expect(MAX_COMPARE).toBe(2);
        let s = toggleCompare([], 'a');
        s = toggleCompare(s, 'b');
        expect(s).toEqual(['a', 'b']);
        expect(toggleCompare(s, 'c')).toEqual(['b', 'c']);
        expect(toggleCompare(s, 'a')).toEqual(['b']);
    });
});

describe('overlay', () => {
    it('puts both runs on the union of their steps, with gaps where one has no value', () => {
        const a = [{ t: 1, step: 0, loss: 2 }, { t: 2, step: 2, loss: 1 }, { t: 3, step: 4, loss: 0.5 }];
        const b = [{ t: 9, step: 0, loss: 3 }, { t: 10, step: 1, loss: 'NaN' }, { t: 11, step: 2, loss: 1.5 }, { t: 12, loss: 9 }];
        const data = overlay([a, b], 'loss');
        expect(data).toEqual([[0, 1, 2, 4], [2, null, 1, 0.5], [3, null, 1.5, null]]);
        expect(overlayPoints(data)).toEqual([3, 2]);
    });

    it('keeps the last row of a repeated step', () => {
        expect(overlay([[{ t: 1, step: 5, loss: 1 }, { t: 2, step: 5, loss: 0.5 }]], 'loss')).toEqual([[5], [0.5]]);
    });
});

describe('Queries', () => {
    it('matches replies to queries by id, fails on error replies and on disconnect', async () => {
        const sent: string[] = [];
        let open = true;
        const q = new Queries(text => (open ? (sent.push(text), true) : false));
        const first = q.ask({ what: 'runs' });
        const second = q.ask({ what: 'run', run: 'x' });
        const third = q.ask({ what: 'runs' });
        expect(sent.map(s => JSON.parse(s) as { id: number; type: string })).toEqual([
            { what: 'runs', type: 'query', id: 1 },
            { what: 'run', run: 'x', type: 'query', id: 2 },
            { what: 'runs', type: 'query', id: 3 },
        ]);
        expect(q.handle({ type: 'reply', id: 2, ok: false, error: 'no such run' })).toBe(true);
        expect(q.handle({ type: 'reply', id: 1, ok: true, runs: [] })).toBe(true);
        expect(q.handle({ type: 'machine', t: 1 })).toBe(false);
        await expect(first).resolves.toMatchObject({ runs: [] });
        await expect(second).rejects.toThrow('no such run');
        q.failAll('the connection to the daemon closed');
        await expect(third).rejects.toThrow('closed');
        open = false;
        await expect(q.ask({ what: 'runs' })).rejects.toThrow('not connected');
    });
});
