import { describe, expect, it } from 'vitest';
import {
    applyCompress, barGroups, compressForRuns, currentModel, describeLive, describeSummary, emptyCompress, fmtAccuracy, fmtLatency, pairedThreads,
    fmtPoints, fmtRatio, fmtSizeMb, fmtSpeed, MAX_SCALE, fmtVsOriginal, MAX_MODELS, modelsByRecency, ratios, stepsOf, summaryOf,
    type CompressState,
} from '../../../extension/webview/compress';

const RUN = 'compress-digits';

/** A step row as deepdive.engine.compress.pipeline emits it. */
const row = (step: string, params: number, sizeMb: number, b1: number, b32: number, accuracy: number) => ({
    step, params, size_mb: sizeMb,
    latency_ms: { b1: { p50: b1, p95: b1 * 1.5, runs: 200 }, b32: { p50: b32, p95: b32 * 1.2, runs: 50 } },
    accuracy, seconds: 1.5, detail: { amount: 0.5 },
});
const ORIGINAL = row('original', 10_000, 0.04, 0.2, 2.0, 0.98);
const PRUNE = row('prune', 2_500, 0.01, 0.1, 0.8, 0.96);
const QUANT = row('quantize', 2_500, 0.0025, 0.05, 0.5, 0.955);

const ev = (kind: string, t: number, fields: Record<string, unknown>, run = RUN) => ({ kind, t, run, rank: 0, ...fields });
const samples = (events: Record<string, unknown>[], run = RUN) => ({ type: 'samples', v: 1, run, rank: 0, t: 1, samples: [], events });
const progress = (t: number, step: string, phase: string, extra: Record<string, unknown> = {}) =>
    ev('compress.progress', t, { step, phase, ...extra });
const stepEv = (t: number, r: Record<string, unknown>) => ev('compress.step', t, r);
const report = (t: number, steps = [ORIGINAL, PRUNE, QUANT], run = RUN) => ev('compress.report', t, {
    model: '/w/models/digits.pt', eval: '/w/digits_eval.py', target: 'x86', threads: 4, steps,
    summary: { size_ratio: 16, params_ratio: 4, speedup_b1: 4, speedup_b32: 4, accuracy_drop_points: 2.5 },
    outputs: { model: '/w/models/digits.compressed.pt', json: '/w/models/digits.compress.json', markdown: '/w/models/digits.compress.md' },
    config: { prune: 0.5 },
}, run);

function feed(s: CompressState, ...events: Record<string, unknown>[]): Set<string> {
    return applyCompress(s, samples(events));
}

describe('applyCompress', () => {
    it('follows a run live: the phase, then each measured step', () => {
        const s = emptyCompress();
        expect([...feed(s, progress(1, 'original', 'measuring'))]).toEqual([RUN]);
        const m = s.models.get(RUN)!;
        expect(m.name).toBe('digits');
        expect(m.live).toMatchObject({ step: 'original', phase: 'measuring' });
        feed(s, stepEv(2, ORIGINAL), progress(3, 'prune', 'pruning', { amount: 0.5 }));
        expect(m.live).toMatchObject({ step: 'prune', phase: 'pruning', numbers: { amount: 0.5 } });
        expect(describeLive(m.live!)).toBe('prune: pruning (amount 0.5)');
        feed(s, progress(4, 'prune', 'fine-tuning after step 1'), stepEv(5, PRUNE));
        expect(stepsOf(m).map(r => r.step)).toEqual(['original', 'prune']);
        expect(m.live).toMatchObject({ step: 'prune', phase: 'measured' });
        expect(m.report).toBeNull();
        const r = stepsOf(m)[1];
        expect(r).toMatchObject({ params: 2500, sizeMb: 0.01, accuracy: 0.96, b1: { p50: 0.1, p95: 0.1 * 1.5, runs: 200 } });
    });

    it('takes the report as the final rows, ends the live phase and keeps the paths', () => {
        const s = emptyCompress();
        feed(s, progress(1, 'original', 'measuring'), stepEv(2, ORIGINAL), stepEv(3, PRUNE));
        feed(s, report(4));
        const m = s.models.get(RUN)!;
        expect(m.live).toBeNull();
        expect(stepsOf(m).map(r => r.step)).toEqual(['original', 'prune', 'quantize']);
        expect(m.path).toBe('/w/models/digits.pt');
        expect(m.report).toMatchObject({
            target: 'x86', threads: 4, eval: '/w/digits_eval.py',
            summary: { sizeRatio: 16, paramsRatio: 4, speedupB1: 4, speedupB32: 4, accuracyDropPoints: 2.5, threadsB1: null },
            outputs: { markdown: '/w/models/digits.compress.md' },
        });
    });

    it('names the thread counts the batch 1 speed-up compares, from the paired timing', () => {
        const s = emptyCompress();
        const r = report(2) as unknown as Record<string, unknown> & { summary: Record<string, unknown> };
        r.summary.latency_paired_ms = {
            b1: { original: 1.89, compressed: 0.127, threads: { original: 2, compressed: 1 } },
            b32: { original: 88.5, compressed: 5.05, threads: { original: 2, compressed: 2 } },
        };
        feed(s, stepEv(1, ORIGINAL), r);
        const sum = s.models.get(RUN)!.report!.summary;
        expect(sum.threadsB1).toEqual({ original: 2, compressed: 1 });
        expect(describeSummary(sum)).toBe('16.0× smaller, 4.00× faster at batch 1 (4.00× faster at 32; batch 1 on 1 thread '
            + 'against 2), accuracy −2.50 points');
        expect(describeSummary({ ...sum, speedupB32: null })).toContain('4.00× faster at batch 1 (on 1 thread against 2)');
        expect(pairedThreads({ b1: { threads: { original: 'x', compressed: 1 } } })).toBeNull();
        expect(pairedThreads(undefined)).toBeNull();
    });

    it('keeps only the latest run of a model: a new run starts over', () => {
        const s = emptyCompress();
        feed(s, stepEv(1, ORIGINAL), stepEv(2, PRUNE), report(3));
        feed(s, progress(10, 'original', 'measuring'));
        const m = s.models.get(RUN)!;
        expect(m.steps.size).toBe(0);
        expect(m.report).toBeNull();
        expect(m.startT).toBe(10);
        feed(s, stepEv(11, ORIGINAL), stepEv(12, QUANT));
        expect(stepsOf(m).map(r => r.step)).toEqual(['original', 'quantize']);
        // a run whose first events were lost still replaces a finished one
        feed(s, report(13, [ORIGINAL, QUANT]));
        feed(s, progress(20, 'prune', 'pruning'));
        expect(m.steps.size).toBe(0);
        expect(m.live?.step).toBe('prune');
        // and a second 'original' row means another run too
        feed(s, stepEv(21, ORIGINAL), stepEv(22, PRUNE), stepEv(30, ORIGINAL));
        expect(stepsOf(m).map(r => r.step)).toEqual(['original']);
    });

    it('ignores what a reconnect snapshot repeats, even events that share a time', () => {
        const s = emptyCompress();
        const history = [progress(1, 'original', 'measuring'), stepEv(2, ORIGINAL), progress(2, 'prune', 'pruning'), stepEv(3, PRUNE)];
        feed(s, ...history);
        const m = s.models.get(RUN)!;
        const snapshot = { type: 'snapshot', t: 5, messages: [samples(history), { type: 'machine', t: 4 }] };
        expect(applyCompress(s, snapshot).size).toBe(0);
        expect(stepsOf(m).map(r => r.step)).toEqual(['original', 'prune']);
        expect(m.startT).toBe(1);
        // a new event at the same time as the last one still counts
        expect(feed(s, progress(3, 'quantize', 'int8')).size).toBe(1);
        expect(m.live?.step).toBe('quantize');
    });

    it('keeps models apart by run and ignores other events and malformed ones', () => {
        const s = emptyCompress();
        applyCompress(s, samples([ev('compress.step', 1, ORIGINAL, 'compress-resnet')], 'compress-resnet'));
        feed(s, stepEv(2, ORIGINAL));
        expect(modelsByRecency(s).map(m => m.name)).toEqual(['digits', 'resnet']);
        const before = JSON.stringify([...s.models.keys()]);
        expect(feed(s, ev('tune.trial', 3, { number: 1 }), ev('compress.step', 4, { params: 3 }), ev('compress.progress', 5, { phase: 'x' }),
            ev('compress.report', 6, { steps: [] }), ev('compress.other', 7, {})).size).toBe(0);
        expect(applyCompress(s, { type: 'machine', t: 1 }).size).toBe(0);
        expect(applyCompress(s, null).size).toBe(0);
        expect(JSON.stringify([...s.models.keys()])).toBe(before);
        // the run comes from the message when the event has none
        applyCompress(s, { type: 'samples', run: 'compress-bert', t: 9, events: [{ kind: 'compress.progress', t: 9, step: 'original', phase: 'measuring' }] });
        expect(s.models.get('compress-bert')?.live?.phase).toBe('measuring');
    });

    it('forgets the least recently heard model beyond MAX_MODELS', () => {
        const s = emptyCompress();
        for (let i = 0; i <= MAX_MODELS; i++) {
            applyCompress(s, samples([ev('compress.step', i + 1, ORIGINAL, `compress-m${i}`)], `compress-m${i}`));
        }
        expect(s.models.size).toBe(MAX_MODELS);
        expect(s.models.has('compress-m0')).toBe(false);
        expect(currentModel(s, null)?.name).toBe(`m${MAX_MODELS}`);
        expect(currentModel(s, 'compress-m3')?.name).toBe('m3');
        expect(currentModel(s, 'compress-gone')?.name).toBe(`m${MAX_MODELS}`);
    });
});

describe('the layers row (depth reduction)', () => {
    it('sorts between prune and distill, and is compared with the original like any step', () => {
        const s = emptyCompress();
        const LAYERS = row('layers', 1_250, 0.005, 0.04, 0.4, 0.95);
        const DISTILL = row('distill', 1_250, 0.005, 0.04, 0.4, 0.965);
        feed(s, report(4, [QUANT, DISTILL, LAYERS, ORIGINAL, PRUNE]));
        const m = s.models.get(RUN)!;
        expect(stepsOf(m).map(r => r.step)).toEqual(['original', 'prune', 'layers', 'distill', 'quantize']);
        const r = ratios(m).find(x => x.step === 'layers')!;
        expect(r.size).toBeCloseTo(8);
        expect(r.speedupB1).toBeCloseTo(5);
        expect(r.accuracyPoints).toBeCloseTo(-3);
    });
});

describe('against the original', () => {
    function finished() {
        const s = emptyCompress();
        feed(s, report(4, [QUANT, ORIGINAL, PRUNE]));  // any order in, pipeline order out
        return s.models.get(RUN)!;
    }

    it('computes each step\'s ratios', () => {
        const m = finished();
        const r = ratios(m);
        expect(r.map(x => x.step)).toEqual(['original', 'prune', 'quantize']);
        expect(r[0]).toEqual({ step: 'original', size: 1, params: 1, speedupB1: 1, speedupB32: 1, accuracyPoints: 0, paired: false });
        expect(r[1].size).toBeCloseTo(4);
        expect(r[1].params).toBeCloseTo(4);
        expect(r[1].speedupB1).toBeCloseTo(2);
        expect(r[1].speedupB32).toBeCloseTo(2.5);
        expect(r[1].accuracyPoints).toBeCloseTo(-2);
        expect(r[2].size).toBeCloseTo(16);
        expect(r[2].speedupB1).toBeCloseTo(4);
        expect(r[2].accuracyPoints).toBeCloseTo(-2.5);
        expect(fmtVsOriginal(r[0])).toBe('baseline');
        expect(fmtVsOriginal(r[2])).toBe('16.0× smaller · 4.00× faster (paired) · −2.50 pts');  // the report's figure
        expect(fmtVsOriginal({ ...r[2], speedupB1: 0.5, paired: false })).toBe('16.0× smaller · 2.00× slower · −2.50 pts');
    });

    it('has no ratios without the original row, or with a zero', () => {
        const s = emptyCompress();
        feed(s, stepEv(1, PRUNE), stepEv(2, { ...QUANT, size_mb: 0, latency_ms: {} }));
        const m = s.models.get(RUN)!;
        expect(ratios(m).every(x => x.size === null && x.speedupB1 === null && x.accuracyPoints === null)).toBe(true);
        expect(summaryOf(m)).toBeNull();
        expect(barGroups(m).groups.every(g => g.bars.every(b => b.rel === null))).toBe(true);
        feed(s, stepEv(3, ORIGINAL));  // a late original: the rows compare from now on; a zero size still does not
        const r = ratios(m);
        expect(r.map(x => x.step)).toEqual(['original', 'prune', 'quantize']);
        expect(r[1].size).toBeCloseTo(4);
        expect([r[2].size, r[2].speedupB1]).toEqual([null, null]);
        expect(r[2].accuracyPoints).toBeCloseTo(-2.5);
    });

    it('summarises a finished run from its report, a running one from its last row', () => {
        expect(summaryOf(finished())).toEqual({ sizeRatio: 16, paramsRatio: 4, speedupB1: 4, speedupB32: 4, accuracyDropPoints: 2.5,
            threadsB1: null });
        const s = emptyCompress();
        feed(s, stepEv(1, ORIGINAL));
        const m = s.models.get(RUN)!;
        expect(summaryOf(m)).toBeNull();
        feed(s, stepEv(2, PRUNE));
        const sum = summaryOf(m)!;
        expect(sum.sizeRatio).toBeCloseTo(4);
        expect(sum.speedupB1).toBeCloseTo(2);
        expect(sum.accuracyDropPoints).toBeCloseTo(2);
        expect(describeSummary(sum)).toBe('4.00× smaller, 2.00× faster at batch 1 (2.50× faster at 32), accuracy −2.00 points');
    });

    it('builds the chart\'s bars relative to the original, with a scale that holds the 100 % line', () => {
        const { groups, max } = barGroups(finished());
        expect(max).toBe(1);
        expect(groups.map(g => g.step)).toEqual(['original', 'prune', 'quantize']);
        expect(groups[0].bars.map(b => [b.metric, b.rel])).toEqual([['size', 1], ['latency', 1], ['accuracy', 1]]);
        const q = groups[2].bars;
        expect(q.map(b => b.metric)).toEqual(['size', 'latency', 'accuracy']);
        expect(q[0].rel).toBeCloseTo(1 / 16);
        expect(q[0].value).toBe(0.0025);
        expect(q[1].rel).toBeCloseTo(0.25);
        expect(q[1].value).toBe(0.05);
        expect(q[2].rel).toBeCloseTo(0.955 / 0.98);
        expect(groups.flatMap(g => g.bars).some(b => b.clipped)).toBe(false);
        // a step that got slower stretches the scale, up to MAX_SCALE; beyond, its bar is clipped
        const s = emptyCompress();
        feed(s, stepEv(1, ORIGINAL), stepEv(2, row('prune', 10_000, 0.01, 0.3, 2, 0.98)));
        const m = s.models.get(RUN)!;
        expect(barGroups(m).max).toBeCloseTo(1.5);
        feed(s, stepEv(3, row('quantize', 10_000, 0.01, 16, 2, 0.98)));
        const slow = barGroups(m);
        expect(slow.max).toBe(MAX_SCALE);
        const cut = slow.groups[2].bars[1];
        expect([cut.metric, cut.clipped]).toEqual(['latency', true]);
        expect(cut.rel).toBeCloseTo(80);
        expect(slow.groups[1].bars[1].clipped).toBe(false);
    });
});

describe('compressForRuns', () => {
    it('keeps compress-only messages out of the Runs panels', () => {
        expect(compressForRuns(samples([stepEv(1, ORIGINAL)]))).toBeNull();
        expect(compressForRuns({ ...samples([]), dropped: 3 })).toEqual({ type: 'dropped', dropped: 3 });
        const withSamples = { ...samples([]), samples: [{ step: 1, loss: 2 }] };
        expect(compressForRuns(withSamples)).toBe(withSamples);
        const train = samples([], 'train-1');
        expect(compressForRuns(train)).toBe(train);
        const snap = { type: 'snapshot', t: 1, messages: [samples([stepEv(1, ORIGINAL)]), train] };
        expect(compressForRuns(snap)).toEqual({ type: 'snapshot', t: 1, messages: [train] });
        const clean = { type: 'snapshot', t: 1, messages: [train] };
        expect(compressForRuns(clean)).toBe(clean);
        expect(compressForRuns(null)).toBeNull();
    });
});

describe('formatting', () => {
    it('formats ratios, points, sizes, latencies and accuracies', () => {
        expect([fmtRatio(3.912), fmtRatio(16), fmtRatio(123.4), fmtRatio(null)]).toEqual(['3.91×', '16.0×', '123×', '—']);
        expect([fmtPoints(0.421), fmtPoints(-2.5), fmtPoints(-0.001), fmtPoints(null)]).toEqual(['+0.42 pts', '−2.50 pts', '+0.00 pts', '—']);
        expect([fmtSizeMb(0.0025), fmtSizeMb(4.567), fmtSizeMb(440.04), fmtSizeMb(null)]).toEqual(['0.003', '4.57', '440.0', '—']);
        expect(fmtLatency({ p50: 0.05123, p95: 12.345, runs: 3 })).toBe('0.0512 / 12.3');
        expect(fmtLatency(null)).toBe('—');
        expect([fmtAccuracy(0.955), fmtAccuracy(12.5), fmtAccuracy(null)]).toEqual(['95.50 %', '12.5', '—']);
        expect([fmtSpeed(2.1), fmtSpeed(1), fmtSpeed(0.0012), fmtSpeed(0.5), fmtSpeed(null)]).toEqual(['2.10× faster', '1.00× faster', '833× slower', '2.00× slower', '—']);
    });
});
