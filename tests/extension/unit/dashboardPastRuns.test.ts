// Past runs are named by what they ran and when, and listed one kind at a time (training by default).
import { describe, expect, it } from 'vitest';
import { describeRun, fmtStart, parseRuns, runName, runTabs, runTooltip, runsOfKind } from '../../../extension/webview/history';

const at = (y: number, mo: number, d: number, h: number, mi: number): number => new Date(y, mo, d, h, mi, 7).getTime() / 1000;
const NOW = at(2026, 2, 14, 18, 30);

const REPLY = {
    runs: [
        { run: '3f9c0a1b2c3d', job: null, name: null, started: at(2026, 2, 14, 14, 2), ended: at(2026, 2, 14, 14, 3), outcome: 'completed', kind: 'train', script: '/home/me/proj/digits.py' },
        { run: 'job-7', job: 'job-7', name: 'Deep environment check', started: at(2026, 2, 14, 13, 0), ended: null, outcome: null, kind: 'check', script: null },
        { run: 'job-8', job: 'job-8', name: 'tune digits.py', started: at(2026, 2, 13, 9, 5), ended: null, outcome: null, kind: 'tune', script: null },
        { run: 'job-9', job: 'job-9', name: 'train mnist.py ×2', started: at(2025, 11, 31, 23, 59), ended: null, outcome: null, kind: 'train', script: 'C:\\work\\mnist.py' },
        { run: 'old', started: at(2026, 2, 14, 8, 0) },  // a daemon from before kinds: a training run by its id
    ],
};

describe('past runs: names', () => {
    it('names a run by its script\'s file name and its start time, not by its id', () => {
        const runs = parseRuns(REPLY);
        expect(runs.map(r => runName(r, NOW))).toEqual([
            'digits.py · 14:02', 'Deep environment check · 13:00', 'old · 08:00', 'tune digits.py · Mar 13 09:05', 'mnist.py · Dec 31 2025 23:59',
        ]);
        expect(describeRun(runs[0], NOW)).toMatch(/^digits\.py · 14:02 · 1 min 0 s · completed$/);
    });

    it('keeps the id, the job title and the script path in the tooltip', () => {
        const job = parseRuns(REPLY).find(r => r.run === 'job-9')!;
        expect(runTooltip(job).split('\n')).toEqual(['train mnist.py ×2', 'run job-9', 'C:\\work\\mnist.py']);
    });

    it('writes start times as short as is unambiguous', () => {
        expect(fmtStart(at(2026, 2, 14, 0, 5), NOW)).toBe('00:05');
        expect(fmtStart(at(2026, 0, 2, 7, 9), NOW)).toBe('Jan 2 07:09');
    });
});

describe('past runs: kinds', () => {
    it('lists training runs by default; deep checks, searches and compressions have their own tabs', () => {
        const runs = parseRuns(REPLY);
        expect(runsOfKind(runs, 'train').map(r => r.run)).toEqual(['3f9c0a1b2c3d', 'old', 'job-9']);
        expect(runsOfKind(runs, 'check').map(r => r.run)).toEqual(['job-7']);
        expect(runTabs(runs)).toEqual([
            { kind: 'train', label: 'Training', count: 3 },
            { kind: 'tune', label: 'Tune', count: 1 },
            { kind: 'check', label: 'Deep check', count: 1 },
        ]);
        expect(runTabs([])).toEqual([{ kind: 'train', label: 'Training', count: 0 }]);
    });

    it('reads an unknown kind as a training run', () => {
        expect(parseRuns({ runs: [{ run: 'x', started: 1, kind: 'banana' }] })[0].kind).toBe('train');
    });
});
