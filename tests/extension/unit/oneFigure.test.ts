// Issue #20, finding 3: the editor shows one figure for each thing. The throughput is the engine's
// samples/s over a stated window, all ranks (server/throughput.py), shown by the status bar and
// the dashboard as it came, with the same label; a compression's speed-up is one figure in the table and
// in the summary line.
import { describe, expect, it } from 'vitest';
import { presentTelemetry } from '../../../extension/src/common/status';
import { applyCompress, describeSummary, emptyCompress, fmtVsOriginal, pairedNote, ratios, summaryOf } from '../../../extension/webview/compress';
import { apply, emptyState, fmtWindow, throughputLabel } from '../../../extension/webview/model';

describe('the throughput figure', () => {
    const now = 1_800_000_000_000;

    it('the status bar tooltip says what the figure is: its window and ranks', () => {
        const p = presentTelemetry({
            t: now / 1000 - 1, gpuCount: 0,
            runs: [{ runId: 'r1', value: 11747.6, unit: 'samples/s', step: 300, label: 'samples/s over the last 10 s, all ranks' }],
        }, now);
        expect(p?.text).toBe('$(rocket) 11.7k samples/s');
        expect(p?.tooltip).toContain('Run r1: 11.7k samples/s over the last 10 s, all ranks at step 300');
    });

    it('the dashboard shows rank 0\'s newest figure with the window the engine sent', () => {
        const s = emptyState();
        const msg = (rank: number, rate: number, windowS: number) => ({
            type: 'samples', run: 'r', rank, seq: 0, t: 10, dropped: 0, events: [],
            samples: [{ t: 9, step: 299, step_time_s: 0.01, samples_per_s: rate - 1, samples_per_s_window_s: windowS },
                { t: 10, step: 300, step_time_s: 0.01, samples_per_s: rate, samples_per_s_window_s: windowS }],
        });
        apply(s, msg(1, 11_900, 10.02));  // another rank's figure is not the one shown
        apply(s, msg(0, 11_747.6, 10.004));
        const run = s.runs.get('r')!;
        expect(run.series.get('samples_per_s')!.last()!.v).toBe(11_747.6);
        expect(throughputLabel(run)).toBe('samples/s over the last 10 s, all ranks');
        apply(s, { ...msg(0, 5000, 2.34), t: 20, samples: [{ t: 20, step: 301, step_time_s: 0.01, samples_per_s: 5000, samples_per_s_window_s: 2.34 }] });
        expect(throughputLabel(run)).toBe('samples/s over the last 2.3 s, all ranks');
        expect([fmtWindow(9.96), fmtWindow(0.25)]).toEqual(['10 s', '0.3 s']);
    });

    it('a run without a window says only what it counts', () => {
        const s = emptyState();
        apply(s, { type: 'samples', run: 'r', rank: 0, seq: 0, t: 1, samples: [{ t: 1, step: 0, samples_per_s: 10 }] });
        expect(throughputLabel(s.runs.get('r')!)).toBe('samples/s, all ranks');
    });
});

describe('the compression speed-up', () => {
    // the steps' own p50s, measured minutes apart, give 1.54× at batch 1; the report's paired timing, 1.79×
    const row = (step: string, sizeMb: number, b1: number, accuracy: number) => ({
        step, params: 1000, size_mb: sizeMb, accuracy, seconds: 1,
        latency_ms: { b1: { p50: b1, p95: b1, runs: 100 }, b32: { p50: b1 * 10, p95: b1 * 10, runs: 20 } },
    });
    const report = {
        kind: 'compress.report', t: 5, run: 'compress-m', rank: 0, target: 'x86', threads: 4,
        steps: [row('original', 4, 0.154, 0.98), row('prune', 2, 0.12, 0.975), row('quantize', 1, 0.1, 0.97)],
        summary: { size_ratio: 4, params_ratio: 1, speedup_b1: 1.79, speedup_b32: 1.6, accuracy_drop_points: 1,
            latency_paired_ms: { b1: { original: 0.179, compressed: 0.1, threads: { original: 4, compressed: 1 } } } },
        outputs: {},
    };

    it('the table\'s final row and the summary line show one figure, and the table says which it is', () => {
        const s = emptyCompress();
        applyCompress(s, { type: 'samples', run: 'compress-m', rank: 0, t: 5, samples: [], events: [report] });
        const m = s.models.get('compress-m')!;
        const vs = ratios(m);
        const final = vs.at(-1)!;
        expect(final.speedupB1).toBe(summaryOf(m)!.speedupB1);
        expect(fmtVsOriginal(final)).toBe('4.00× smaller · 1.79× faster (paired) · −1.00 pts');
        expect(describeSummary(summaryOf(m)!)).toContain('1.79× faster at batch 1');
        expect(pairedNote(vs)).toContain('quantize\'s speed-up is the summary\'s');
        // the steps in between keep their own measurement: no paired timing exists for them
        expect(vs[1].paired).toBe(false);
        expect(vs[1].speedupB1).toBeCloseTo(0.154 / 0.12);
    });

    it('before the report, the table and the "so far" line share the last row\'s own figure', () => {
        const s = emptyCompress();
        const step = (r: Record<string, unknown>, t: number) => ({ kind: 'compress.step', t, run: 'compress-m', rank: 0, ...r });
        applyCompress(s, { type: 'samples', run: 'compress-m', rank: 0, t: 3, samples: [],
            events: [step(report.steps[0], 1), step(report.steps[1], 2)] });
        const m = s.models.get('compress-m')!;
        const vs = ratios(m);
        expect(vs.every(r => !r.paired) && pairedNote(vs) === null).toBe(true);
        expect(summaryOf(m)!.speedupB1).toBe(vs.at(-1)!.speedupB1);
    });
});
