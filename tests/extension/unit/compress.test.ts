import { describe, expect, it } from 'vitest';
import {
    checkLayers, checkSteps, compressOptions, defaultTarget, definesStudent, describeSteps, describeSummary, EVAL_HINT, isEvalScript,
    isModelFile, markdownOfReport, NOT_COMPRESSED, parseCompressArgs, rankCandidates, reportPaths, stepChoices, summaryOf,
} from '../../../extension/src/compress/options';

const picks = { model: '/w/models/digits.pt', eval: '/w/digits_eval.py', target: 'x86' as const };

describe('parseCompressArgs', () => {
    it('takes a model from a URI, a path or an object, and drops what it does not know', () => {
        expect(parseCompressArgs('file:///w/m.pt')).toEqual({ modelUri: 'file:///w/m.pt' });
        expect(parseCompressArgs('models/m.pt')).toEqual({ model: 'models/m.pt' });
        expect(parseCompressArgs('C:\\w\\m.pt')).toEqual({ model: 'C:\\w\\m.pt' });
        expect(parseCompressArgs({ scheme: 'file', fsPath: '/w/m.pt', toString: () => 'file:///w/m.pt' })).toEqual({ modelUri: 'file:///w/m.pt' });
        expect(parseCompressArgs({
            model: ' m.pt ', eval: 'e.py', steps: ['prune', 'quantize', 'prune'], target: 'arm', prune: 0.3, quantize: 'int8-static',
            importance: 'taylor', quiet: true, wait: true, bogus: 1,
        })).toEqual({ model: 'm.pt', eval: 'e.py', steps: ['prune', 'quantize'], target: 'arm', prune: 0.3, quantize: 'int8-static', importance: 'taylor', quiet: true, wait: true });
        expect(parseCompressArgs({ steps: ['layers', 'distill'], layers: 2 })).toEqual({ steps: ['layers', 'distill'], layers: 2 });
        expect(parseCompressArgs({ steps: ['prune', 'shrink'], target: 'mips', prune: 1.5, quantize: 'int3', importance: 'l9', quiet: 'yes' })).toEqual({});
        for (const layers of [0, 2.5, '2', -1, 1001, Number.NaN, true]) {
            expect(parseCompressArgs({ layers })).toEqual({});
        }
        expect(parseCompressArgs(undefined)).toEqual({});
        expect(parseCompressArgs(42)).toEqual({});
    });
});

describe('file kinds', () => {
    it('knows model files and evaluation scripts by extension', () => {
        expect(['a.pt', 'b.PTH', 'c/d.bin'].map(isModelFile)).toEqual([true, true, true]);
        expect(['a.py', 'b.onnx', 'pt'].map(isModelFile)).toEqual([false, false, false]);
        expect(isEvalScript('x/eval.py')).toBe(true);
        expect(isEvalScript('x/eval.pt')).toBe(false);
    });

    it('sees student() only as a top-level definition', () => {
        expect(definesStudent('import torch\n\ndef student():\n    return Net(8)\n')).toBe(true);
        expect(definesStudent('def student_model():\n    pass\n# def student():\n    def student():\n')).toBe(false);
    });

    it('tells an evaluation script with a student from one without (the EVAL.py contract)', () => {
        const text = [
            '"""The evaluation script: def student() would go here."""',
            'import torch',
            '',
            'def evaluate(model):',
            '    return 1.0',
            '',
            'def train_loader():',
            '    return []',
        ].join('\n');
        expect(checkSteps(['distill'], text)).toMatch(/needs a student/);
        expect(checkSteps(['prune', 'distill'], text)).toBeUndefined();
        expect(checkSteps(['layers', 'distill'], text)).toBeUndefined();  // the shallower model is the student
        expect(checkSteps(['distill'], `${text}\n\ndef student():\n    return torch.nn.Linear(4, 2)\n`)).toBeUndefined();
    });
});

describe('checkSteps', () => {
    it('needs a step, and a student for distillation alone', () => {
        expect(checkSteps([])).toMatch(/at least one step/);
        expect(checkSteps(['quantize'])).toBeUndefined();
        expect(checkSteps(['distill'])).toBeUndefined();  // script unknown: the job will say
        expect(checkSteps(['distill'], 'def evaluate(m):\n    return 1\n')).toMatch(/^distill needs a student: pick Prune or Reduce depth too/);
        expect(checkSteps(['layers'])).toBeUndefined();  // depth reduction alone is a job, as the CLI allows
        expect(checkSteps(['distill', 'quantize'], 'def student():\n    return None\n')).toBeUndefined();
    });
});

describe('stepChoices', () => {
    it('offers the four steps in pipeline order, all but depth reduction picked, with the amounts in the labels', () => {
        const c = stepChoices();
        expect(c.map(x => [x.id, x.label, x.picked])).toEqual([
            ['prune', 'Prune 50 %', true], ['layers', 'Reduce depth (keep N blocks)', false], ['distill', 'Distill', true],
            ['quantize', 'Quantize int8', true],
        ]);
        expect(stepChoices(0.3, 'int8-static').map(x => x.label)).toEqual(['Prune 30 %', 'Reduce depth (keep N blocks)', 'Distill', 'Quantize int8-static']);
        expect(stepChoices(undefined, undefined, 2)[1].label).toBe('Reduce depth (keep 2 blocks)');
        expect(stepChoices(undefined, undefined, 1)[1].label).toBe('Reduce depth (keep 1 block)');
    });
});

describe('checkLayers', () => {
    it('takes a whole number from 1 to 1000, as a number or the input box\'s text', () => {
        for (const ok of [1, 4, 1000, '3', ' 12 ']) {
            expect(checkLayers(ok)).toBeUndefined();
        }
        expect(checkLayers(0)).toBe('the number of blocks kept is a whole number from 1 to 1000, got 0');
        expect(checkLayers('')).toBe('the number of blocks kept is a whole number from 1 to 1000, got ""');
        for (const bad of [1001, 2.5, -3, Number.NaN, Number.POSITIVE_INFINITY, '2.5', 'four', '1e2', '-1', undefined, null, true]) {
            expect(checkLayers(bad)).toMatch(/^the number of blocks kept is a whole number from 1 to 1000, got /);
        }
    });
});

describe('compressOptions', () => {
    it('builds the job options from the picks: null for the steps left out', () => {
        expect(compressOptions({ ...picks, steps: ['prune', 'distill', 'quantize'] })).toEqual({
            model: '/w/models/digits.pt', eval: '/w/digits_eval.py', prune: 0.5, layers: null, distill: true, quantize: 'int8', target: 'x86',
        });
        expect(compressOptions({ ...picks, steps: ['quantize'], target: 'arm', quantize: 'int8-dynamic', prune: 0.2, importance: 'bn' })).toEqual({
            model: '/w/models/digits.pt', eval: '/w/digits_eval.py', prune: null, layers: null, distill: false, quantize: 'int8-dynamic', target: 'arm', importance: 'bn',
        });
        expect(compressOptions({ ...picks, steps: ['prune'], prune: 0.25 })).toMatchObject({ prune: 0.25, layers: null, distill: false, quantize: null });
    });

    it('passes the blocks kept only when Reduce depth is picked', () => {
        expect(compressOptions({ ...picks, steps: ['prune', 'layers', 'distill'], layers: 2 })).toEqual({
            model: '/w/models/digits.pt', eval: '/w/digits_eval.py', prune: 0.5, layers: 2, distill: true, quantize: null, target: 'x86',
        });
        expect(compressOptions({ ...picks, steps: ['layers'], layers: 4 })).toMatchObject({ prune: null, layers: 4, distill: false, quantize: null });
        expect(compressOptions({ ...picks, steps: ['prune', 'quantize'], layers: 2 })).toMatchObject({ layers: null });
        // the shallower model is distillation's student: no student() needed
        expect(compressOptions({ ...picks, steps: ['layers', 'distill'], layers: 3 }, 'def evaluate(m): return 1\n')).toMatchObject({ layers: 3, distill: true });
    });

    it('refuses a bad or missing number of blocks when Reduce depth is picked', () => {
        expect(() => compressOptions({ ...picks, steps: ['layers'] })).toThrow(/^reduce depth needs the number of blocks to keep$/);
        expect(() => compressOptions({ ...picks, steps: ['layers'], layers: 0 })).toThrow(/^the number of blocks kept is a whole number from 1 to 1000, got 0$/);
        expect(() => compressOptions({ ...picks, steps: ['layers', 'quantize'], layers: 2.5 })).toThrow(/whole number from 1 to 1000, got 2\.5/);
        expect(() => compressOptions({ ...picks, steps: ['layers'], layers: 1001 })).toThrow(/got 1001/);
        // left out, a bad value is not looked at
        expect(compressOptions({ ...picks, steps: ['quantize'], layers: -1 })).toMatchObject({ layers: null });
    });

    it('refuses what the job would refuse, with one line that says what to change', () => {
        expect(() => compressOptions({ ...picks, model: '/w/model.onnx', steps: ['prune'] })).toThrow(/^the model must be a \.pt, \.pth, \.bin file \(torch\.save\), got model\.onnx$/);
        expect(() => compressOptions({ ...picks, eval: '/w/eval.txt', steps: ['prune'] })).toThrow(/must be a \.py file, got eval\.txt/);
        expect(() => compressOptions({ ...picks, steps: [] })).toThrow(/at least one step: prune, reduce depth, distill or quantize/);
        expect(() => compressOptions({ ...picks, steps: ['distill'] }, 'def evaluate(m): return 1\n')).toThrow(/needs a student/);
        expect(() => compressOptions({ ...picks, steps: ['prune'], prune: 1 })).toThrow(/between 0 and 1, got 1/);
        expect(() => compressOptions({ ...picks, steps: ['prune'], target: 'riscv' as never })).toThrow(/target must be x86 or arm, got riscv/);
        expect(() => compressOptions({ ...picks, steps: ['quantize'], quantize: 'int2' as never })).toThrow(/quantization must be one of int8, /);
    });

    it('describes the steps', () => {
        const all = compressOptions({ ...picks, steps: ['quantize', 'prune', 'distill'] });
        expect(describeSteps(all)).toBe('prune 50 % → distill → int8 (x86)');
        const deep = compressOptions({ ...picks, steps: ['quantize', 'distill', 'layers', 'prune'], layers: 2 });
        expect(describeSteps(deep)).toBe('prune 50 % → keep 2 blocks → distill → int8 (x86)');
        const shallow = compressOptions({ ...picks, steps: ['layers', 'quantize'], layers: 1 });
        expect(describeSteps(shallow)).toBe('keep 1 block → int8 (x86)');
        const q = compressOptions({ ...picks, steps: ['quantize'], target: 'arm' });
        expect(describeSteps(q)).toBe('int8 (arm)');
    });
});

describe('the finished job', () => {
    const result = {
        report: '/w/models/digits.compress.json',
        summary: { size_ratio: 3.912, params_ratio: 2, speedup_b1: 2.1, speedup_b32: 1.5, accuracy_drop_points: 0.42 },
    };

    it('finds the reports: the JSON in the result, the Markdown beside it unless named', () => {
        expect(reportPaths(result)).toEqual({ json: '/w/models/digits.compress.json', markdown: '/w/models/digits.compress.md' });
        expect(reportPaths({ report: '/w/r.json', outputs: { markdown: '/elsewhere/r.md' } })).toEqual({ json: '/w/r.json', markdown: '/elsewhere/r.md' });
        expect(reportPaths({ report: '/w/report' })).toEqual({ json: '/w/report' });
        expect(reportPaths({})).toEqual({});
        expect(reportPaths(null)).toEqual({});
    });

    it('reads the Markdown path the JSON report names', () => {
        expect(markdownOfReport(JSON.stringify({ outputs: { model: 'm', json: 'j', markdown: '/o/digits.compress.md' } }))).toBe('/o/digits.compress.md');
        expect(markdownOfReport('{"outputs": {}}')).toBeUndefined();
        expect(markdownOfReport('not json')).toBeUndefined();
    });

    it('summarises the result in one line', () => {
        const s = summaryOf(result)!;
        expect(s).toEqual({ sizeRatio: 3.912, speedupB1: 2.1, speedupB32: 1.5, accuracyDropPoints: 0.42 });
        expect(describeSummary(s)).toBe('3.91× smaller, 2.10× faster at batch 1, accuracy −0.42 points');
        expect(describeSummary({ sizeRatio: null, speedupB1: 0.8, speedupB32: null, accuracyDropPoints: -1.5 })).toBe('1.25× slower at batch 1, accuracy +1.50 points');
        expect(summaryOf({ report: 'x' })).toBeUndefined();
    });
});

describe('quick pick order', () => {
    it('puts evaluation scripts near the model first', () => {
        const files = ['/w/train.py', '/w/other/eval_x.py', '/w/models/digits_eval.py', '/w/models/util.py', '/w/models/digits_eval.py'];
        expect(rankCandidates(files, EVAL_HINT, '/w/models/digits.pt')).toEqual(['/w/models/digits_eval.py', '/w/other/eval_x.py', '/w/models/util.py', '/w/train.py']);
        expect(rankCandidates(files, EVAL_HINT, undefined, 2)).toEqual(['/w/models/digits_eval.py', '/w/other/eval_x.py']);
    });

    it('puts models that compress wrote last', () => {
        expect(rankCandidates(['/w/a.compressed.pt', '/w/b.pt', '/w/c.bin'], NOT_COMPRESSED)).toEqual(['/w/b.pt', '/w/c.bin', '/w/a.compressed.pt']);
    });

    it('offers this machine\'s CPU first', () => {
        expect(defaultTarget('arm64')).toBe('arm');
        expect(defaultTarget('x64')).toBe('x86');
        expect(defaultTarget('ia32')).toBe('x86');
    });
});
