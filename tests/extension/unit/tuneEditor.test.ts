import { readFileSync } from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import {
    bestParamsOf, bestValueOf, checkMetric, checkParallel, checkTrials, describeApply, describeParams, parseTuneArgs,
    scriptOfJob, toPlainEdits, tuneOptions,
} from '../../../extension/src/tune/args';
import { codeLines, firstSuggestLine, guessDirection, guessMetric, suggestLines } from '../../../extension/src/tune/finder';

const DIGITS = path.resolve(__dirname, '../../../server/examples/digits.py');

describe('suggestLines / firstSuggestLine (the Tune CodeLens)', () => {
    it('finds suggest( calls in code, not in docstrings, strings or comments', () => {
        const src = [
            '"""A script.',
            'Its hyperparameters are ``run.suggest(...)`` declarations.',
            '"""',
            'import deepdive.engine as dd',
            '# lr = run.suggest("lr", 1e-4, 1e-1)',
            'msg = "call suggest( later"',
            'run = dd.setup()',
            'lr = run.suggest("lr", 1e-4, 1e-1, log=True, default=3e-3)',
            'h = args.h if args.h else run.suggest(',
            '    "hidden", 16, 512, default=256)',
            'x = suggest("y", choices=["a", "b"], default="a")  # bare',
            'def suggest(name):',
            'y = mysuggest("z")',
            "s = '''suggest(",
            "'''",
        ].join('\n');
        expect(suggestLines(src)).toEqual([7, 8, 10]);
        expect(firstSuggestLine(src)).toBe(7);
    });

    it('has no line for a script without suggest(, and handles CRLF and escaped quotes', () => {
        expect(firstSuggestLine('import torch\nprint("suggest(")\n')).toBeUndefined();
        expect(suggestLines('a = "x\\"suggest("\r\nb = t.suggest("b", 1, 2, default=1)\r\n')).toEqual([1]);
    });

    it('finds the first suggest() of the digits example, below its docstring', () => {
        const text = readFileSync(DIGITS, 'utf8');
        const line = firstSuggestLine(text)!;
        expect(text.split('\n')[line]).toMatch(/^\s+lr = run\.suggest\("lr"/);
    });

    it('codeLines keeps columns and line count', () => {
        const lines = codeLines('a = "b#c"  # d\nx = 1');
        expect(lines).toEqual(['a = ' + ' '.repeat(10), 'x = 1']);
    });
});

describe('guessMetric / guessDirection', () => {
    it('takes the first logged evaluation metric, not the training loss logged before it', () => {
        expect(guessMetric('run.log(loss=loss)\nrun.log(accuracy=acc)')).toBe('accuracy');
        expect(guessMetric('import math\ny = math.log(x)\nrun.log(\n    val_acc=a, loss=l)')).toBe('val_acc');
        expect(guessMetric('# run.log(acc=1)\nprint("run.log(f1=2)")\n')).toBe('loss');
        expect(guessMetric('run.log(**metrics)')).toBe('loss');
        expect(guessMetric('run.log(a == b)')).toBe('loss');
    });

    it('guesses the digits example\'s metric: its keep_best, not the batch loss it logs first', () => {
        expect(guessMetric(readFileSync(DIGITS, 'utf8'))).toBe('accuracy');
    });

    it('maximizes accuracy-like metrics and minimizes the rest', () => {
        for (const m of ['accuracy', 'val_acc', 'f1', 'test_auc', 'reward', 'top1', 'mIoU']) {
            expect(guessDirection(m), m).toBe('maximize');
        }
        for (const m of ['loss', 'val_loss', 'error', 'perplexity', 'mae', 'accurate_loss_thing']) {
            expect(guessDirection(m), m).toBe('minimize');
        }
    });
});

describe('parseTuneArgs', () => {
    it('takes a URI string, a path, a Uri-like object or an object of options', () => {
        expect(parseTuneArgs('file:///w/train.py')).toEqual({ uri: 'file:///w/train.py' });
        expect(parseTuneArgs('train.py')).toEqual({ path: 'train.py' });
        expect(parseTuneArgs('C:\\w\\train.py')).toEqual({ path: 'C:\\w\\train.py' });
        const uri = { scheme: 'file', fsPath: '/w/t.py', toString: () => 'file:///w/t.py' };
        expect(parseTuneArgs(uri)).toEqual({ uri: 'file:///w/t.py' });
        expect(parseTuneArgs({ uri, trials: 3 })).toEqual({ uri: 'file:///w/t.py', trials: 3 });
        expect(parseTuneArgs(undefined)).toEqual({});
        expect(parseTuneArgs(7)).toEqual({});
    });

    it('keeps valid options and drops invalid ones', () => {
        expect(parseTuneArgs({
            path: ' s.py ', trials: 3, parallel: 2, metric: 'accuracy', direction: 'maximize', value: 'best', sampler: 'tpe',
            pruner: 'median', study: 'x', args: ['--epochs', '1'], quiet: true, wait: true,
        })).toEqual({
            path: 's.py', trials: 3, parallel: 2, metric: 'accuracy', direction: 'maximize', value: 'best', sampler: 'tpe',
            pruner: 'median', study: 'x', args: ['--epochs', '1'], quiet: true, wait: true,
        });
        expect(parseTuneArgs({ trials: 0, parallel: 1.5, metric: ' ', direction: 'up', value: 'max', args: [1], quiet: 'yes' })).toEqual({});
    });
});

describe('input checks and job options', () => {
    it('validates trials, parallelism and the metric', () => {
        expect(checkTrials('20')).toBeUndefined();
        expect(checkTrials(' 3 ')).toBeUndefined();
        expect(checkTrials('0')).toMatch(/whole number/);
        expect(checkTrials('2.5')).toMatch(/whole number/);
        expect(checkTrials('x')).toMatch(/whole number/);
        expect(checkParallel('4', 4)).toBeUndefined();
        expect(checkParallel('5', 4)).toMatch(/1 to 4/);
        expect(checkMetric('val_loss')).toBeUndefined();
        expect(checkMetric('val loss')).toBeDefined();
    });

    it('builds the tune job\'s options, optional ones only when given', () => {
        expect(tuneOptions('/w/s.py', { trials: 20, parallel: 1, metric: 'loss', direction: 'minimize' }))
            .toEqual({ path: '/w/s.py', trials: 20, parallel: 1, metric: 'loss', direction: 'minimize' });
        expect(tuneOptions('/w/s.py', { trials: 3, parallel: 2, metric: 'acc', direction: 'maximize', sampler: 'tpe', pruner: 'median', study: 's', args: ['--x'] }))
            .toEqual({ path: '/w/s.py', trials: 3, parallel: 2, metric: 'acc', direction: 'maximize', sampler: 'tpe', pruner: 'median', study: 's', args: ['--x'] });
        expect(tuneOptions('/w/s.py', { trials: 3, parallel: 2, metric: 'acc', direction: 'maximize', args: [] })).not.toHaveProperty('args');
        expect(tuneOptions('/w/s.py', { trials: 3, parallel: 1, metric: 'acc', direction: 'maximize', value: 'best' }))
            .toEqual({ path: '/w/s.py', trials: 3, parallel: 1, metric: 'acc', direction: 'maximize', value: 'best' });
    });
});

describe('a finished tune job\'s result', () => {
    it('reads the best params and value under either spelling', () => {
        expect(bestParamsOf({ best_params: { lr: 0.01 }, best_value: 0.5 })).toEqual({ lr: 0.01 });
        expect(bestParamsOf({ bestParams: { lr: 0.02 } })).toEqual({ lr: 0.02 });
        expect(bestParamsOf({ best: { params: { lr: 0.03 }, value: 1 } })).toEqual({ lr: 0.03 });
        expect(bestParamsOf({ best_params: {} })).toBeUndefined();
        expect(bestParamsOf({ best_params: [1] })).toBeUndefined();
        expect(bestParamsOf(null)).toBeUndefined();
        expect(bestValueOf({ best_value: 0.5 })).toBe(0.5);
        expect(bestValueOf({ bestValue: 2 })).toBe(2);
        expect(bestValueOf({ best: { value: 3 } })).toBe(3);
        expect(bestValueOf({ best_value: null })).toBeUndefined();
        expect(bestValueOf(undefined)).toBeUndefined();
    });

    it('finds the script in the job\'s argv', () => {
        expect(scriptOfJob({ argv: ['/py', '-m', 'deepdive', 'tune', 'train.py', '--trials', '3'], cwd: '/w' })).toBe(path.resolve('/w', 'train.py'));
        expect(scriptOfJob({ argv: ['/py', '/abs/t.py'], cwd: '/w' })).toBe(path.resolve('/abs/t.py'));
        expect(scriptOfJob({ argv: ['/py', '-m', 'x'], cwd: '/w' })).toBeUndefined();
    });

    it('describes params and what applying did', () => {
        expect(describeParams({ opt: 'adam', lr: 0.003, hidden: 256 })).toBe('hidden=256, lr=0.003, opt=adam');
        // the notification, the CodeLens tooltip and the code action's title: 4 significant digits
        expect(describeParams({ lr: 0.052341873920147, wd: 1.2345678e-5, act: true })).toBe('act=true, lr=0.05234, wd=1.235e-5');
        expect(describeApply({ changed: ['lr', 'hidden'], unchanged: ['dropout'], missing: ['momentum'] }, 'digits.py'))
            .toBe('set lr, hidden in digits.py; unchanged: dropout; no suggest() for momentum');
        expect(describeApply({ changed: [], unchanged: ['lr'] }, 'a.py')).toBe('a.py already has the best parameters');
    });
});

describe('toPlainEdits (applyBest edits -> editor ranges)', () => {
    const e = (sl: number, sc: number, el: number, ec: number, newText: string) => ({ startLine: sl, startCharacter: sc, endLine: el, endCharacter: ec, newText });

    it('maps the daemon\'s edits to ranges in document order', () => {
        expect(toPlainEdits([e(9, 50, 9, 54, '0.01'), e(2, 10, 2, 13, '256')])).toEqual([
            { start: { line: 2, character: 10 }, end: { line: 2, character: 13 }, newText: '256' },
            { start: { line: 9, character: 50 }, end: { line: 9, character: 54 }, newText: '0.01' },
        ]);
        expect(toPlainEdits([])).toEqual([]);
        // touching edits are fine; an empty range is an insertion
        expect(toPlainEdits([e(1, 0, 1, 2, 'a'), e(1, 2, 1, 2, 'b')])).toHaveLength(2);
    });

    it('refuses malformed, backwards and overlapping edits', () => {
        expect(() => toPlainEdits([e(-1, 0, 0, 0, 'x')])).toThrow(/malformed/);
        expect(() => toPlainEdits([{ ...e(0, 0, 0, 1, 'x'), newText: 3 } as never])).toThrow(/malformed/);
        expect(() => toPlainEdits([e(0, 1.5, 0, 2, 'x')])).toThrow(/malformed/);
        expect(() => toPlainEdits([e(2, 5, 2, 3, 'x')])).toThrow(/ends before/);
        expect(() => toPlainEdits([e(1, 0, 1, 5, 'a'), e(1, 4, 1, 6, 'b')])).toThrow(/overlap/);
    });
});
