// The rules the editor shares with `deepdive tune` (issue #20, finding 6), checked on the same cases as
// tests/tune/test_display.py: numbers to 4 significant digits, and the default metric read from a script.
import { readFileSync } from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { defaultMetric, guessDirection } from '../../../extension/src/tune/finder';
import { formatParams, formatSig, roundSig } from '../../../extension/src/tune/rounding';

const ROOT = path.resolve(__dirname, '../../..');
const CASES = JSON.parse(readFileSync(path.join(ROOT, 'tests/tune/shared_cases.json'), 'utf8')) as {
    numbers: [unknown, string, unknown][];
    directions: Record<'minimize' | 'maximize', string[]>;
    metrics: { file?: string; text?: string; metric: string; direction: string; source: string }[];
};

describe('formatSig / roundSig (as server/tune/rounding.py)', () => {
    it.each(CASES.numbers)('%s is shown as %s and rounds to %s', (value, shown, rounded) => {
        expect(formatSig(value)).toBe(shown);
        expect(roundSig(value)).toBe(rounded);
    });

    it('writes parameters as a person does', () => {
        expect(formatParams({ lr: 0.052341873920147, hidden: 256, act: 'gelu' })).toBe('act=gelu, hidden=256, lr=0.05234');
        expect(formatSig(null)).toBe('—');
        expect(formatSig(Number.NaN)).toBe('nan');
    });
});

describe('defaultMetric (as server/tune/metric.py)', () => {
    it.each(CASES.metrics.map(c => [c.file ?? c.text!.slice(0, 30), c] as const))('%s', (_name, c) => {
        const text = c.file ? readFileSync(path.join(ROOT, c.file), 'utf8') : c.text!;
        expect(defaultMetric(text)).toEqual({ metric: c.metric, direction: c.direction, source: c.source });
    });

    it('guesses the direction from the name; a loss is never maximized', () => {
        for (const [direction, names] of Object.entries(CASES.directions)) {
            for (const name of names) {
                expect(guessDirection(name), name).toBe(direction);
            }
        }
    });
});
