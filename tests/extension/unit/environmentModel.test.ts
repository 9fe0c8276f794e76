import { describe, expect, it } from 'vitest';
import { environmentNodes } from '../../../extension/src/views/environmentModel';
import { cpuReport, gpuReport } from './fixtures';

describe('environmentNodes', () => {
    it('lists Python, torch, CUDA, the missing GPU reason, packages, host and state dir', () => {
        const nodes = environmentNodes(cpuReport());
        const byId = Object.fromEntries(nodes.map((n) => [n.id, n]));
        expect(nodes.map((n) => n.id)).toEqual(['python', 'torch', 'cuda', 'gpus', 'packages', 'host', 'deepCheck', 'stateDir', 'deepdive']);
        expect(byId.python).toMatchObject({ label: 'Python 3.12.3', description: '/home/u/.venv/bin/python' });
        expect(byId.torch.label).toBe('torch 2.13.0+cpu');
        expect(byId.cuda).toMatchObject({ label: 'CUDA: not available', description: 'CPU-only torch build' });
        expect(byId.gpus).toMatchObject({ label: 'No NVIDIA GPU: NVML library not found', icon: 'warning' });
        expect(byId.gpus.children).toBeUndefined();
        expect(byId.packages.description).toBe('1 of 2 installed');
        expect(byId.packages.children?.map((c) => [c.label, c.description])).toEqual([
            ['torch', '2.13.0+cpu'],
            ['optuna', 'not installed'],
        ]);
        expect(byId.stateDir.description).toBe('/home/u/.local/state/deepdive');
    });

    it('lists each GPU under a GPUs node', () => {
        const gpus = environmentNodes(gpuReport()).find((n) => n.id === 'gpus');
        expect(gpus).toMatchObject({ label: 'GPUs: 1', description: 'driver 550.54.15' });
        expect(gpus?.children).toEqual([
            expect.objectContaining({ label: '0: NVIDIA H200', description: '140.4 GiB · sm 9.0', tooltip: 'GPU-1234' }),
        ]);
    });

    it('says torch is not installed', () => {
        const r = cpuReport();
        r.torch = { installed: false, error: "No module named 'torch'" };
        const nodes = environmentNodes(r);
        expect(nodes.find((n) => n.id === 'torch')?.label).toBe('torch: not installed');
        expect(nodes.find((n) => n.id === 'cuda')).toMatchObject({ label: 'CUDA: unknown', description: 'torch is not installed' });
    });
});

describe('the deep check where the user looks', () => {
    const measured = {
        jobId: 'j1', measuredAt: 1_700_000_000, torch: '2.13.0+cpu', importS: 1.25,
        matmul: [
            { device: 'cpu', name: 'Intel Xeon', dtype: 'float32', size: 1024, gflops: 61.44 },
            { device: 'cpu', name: 'Intel Xeon', dtype: 'bfloat16', size: 1024, gflops: 142.6 },
        ],
    };
    it('the Environment view shows the best GFLOP/s and every measurement', () => {
        const node = environmentNodes({ ...cpuReport(), deepCheck: measured }).find((n) => n.id === 'deepCheck');
        expect(node?.label).toBe('Deep check: 143 GFLOP/s');
        expect(node?.description).toMatch(/^cpu bfloat16 · /);
        expect(node?.children?.map((c) => [c.label, c.description])).toEqual([
            ['cpu (Intel Xeon) float32', '61.4 GFLOP/s (1024×1024)'], ['cpu (Intel Xeon) bfloat16', '143 GFLOP/s (1024×1024)']]);
        const none = environmentNodes(cpuReport()).find((n) => n.id === 'deepCheck');
        expect(none?.label).toBe('Deep check: not run');
    });
    it('the report has a Deep check section with the table, or says how to run it', async () => {
        const { renderReport } = await import('../../../extension/src/report/markdown');
        const text = renderReport({ ...cpuReport(), deepCheck: measured });
        expect(text).toContain('## Deep check');
        expect(text).toContain('| cpu (Intel Xeon) | bfloat16 | 1024×1024 | 143 |');
        expect(text).toContain('with torch 2.13.0+cpu (import 1.25 s)');
        expect(renderReport(cpuReport())).toContain('Not run yet: **Deepdive: Run Deep Check**');
    });
});
