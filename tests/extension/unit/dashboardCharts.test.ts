// A chart with no data on this machine says why (from the run's precision, processes and the machine).
import { describe, expect, it } from 'vitest';
import { CHARTS, chartHasData, chartNote, noDataReason } from '../../../extension/webview/charts';
import { apply, emptyState } from '../../../extension/webview/model';

const chart = (id: string) => CHARTS.find(c => c.id === id)!;
const NO_GPU = { gpus: 0, gpuReason: 'NVML library not found' };

function bf16CpuRun() {
    const state = emptyState();
    const setup = { kind: 'setup', t: 1, precision: 'bf16', device: 'cpu', world_size: 1, script: '/w/digits.py' };
    const samples = [1, 2, 3].map(i => ({
        t: 1 + i, step: i, step_time_s: 0.1, samples_per_s: 640, loss: 2 / i, loss_scale: null, skipped_steps: 0,
        precision: 'bf16', mem_rss_mib: 300,
    }));
    apply(state, { type: 'samples', run: 'r', rank: 0, t: 4, samples, events: [setup] });
    return state.runs.get('r')!;
}

describe('charts without data', () => {
    it('say that a bf16 run has no loss scaling instead of drawing a flat line of skipped steps', () => {
        const run = bf16CpuRun();
        expect(chartHasData(chart('loss_scale'), run)).toBe(false);
        expect(noDataReason(chart('loss_scale'), run, NO_GPU)).toBe(
            'No loss scaling: this run trains in bf16 (only fp16 needs a loss scaler), so no step is skipped.');
        expect(chartHasData(chart('loss'), run)).toBe(true);
    });

    it('say that one process has no gradient communication', () => {
        const run = bf16CpuRun();
        expect(chartHasData(chart('comm_bytes'), run)).toBe(false);
        expect(noDataReason(chart('comm_bytes'), run, NO_GPU)).toMatch(/^No gradient communication: this run has one process/);
    });

    it('wait for the first step before blaming the hardware', () => {
        const state = emptyState();
        apply(state, { type: 'samples', run: 'r', rank: 0, t: 1, samples: [], events: [{ kind: 'setup', t: 1, precision: 'bf16' }] });
        expect(noDataReason(chart('loss_scale'), state.runs.get('r')!, NO_GPU)).toBe('Waiting for the run\'s first timed step.');
    });

    it('note that memory on a machine without a GPU is the process RSS, and why', () => {
        const run = bf16CpuRun();
        expect(chartHasData(chart('memory'), run)).toBe(true);
        expect(chartNote(chart('memory'), run, NO_GPU)).toBe('process RSS (no GPU on this machine: NVML library not found)');
        expect(chartNote(chart('loss'), run, NO_GPU)).toBeNull();
    });

    it('remember the run\'s setup facts from its setup event', () => {
        expect(bf16CpuRun().setup).toEqual({ script: '/w/digits.py', device: 'cpu', precision: 'bf16', worldSize: 1 });
    });
});
