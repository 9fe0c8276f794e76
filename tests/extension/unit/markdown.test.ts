import { describe, expect, it } from 'vitest';
import { noGpuText } from '../../../extension/src/report/format';
import { renderReport } from '../../../extension/src/report/markdown';
import { cpuReport, gpuReport } from './fixtures';

describe('renderReport', () => {
    it('renders a CPU-only machine, naming why there is no GPU', () => {
        const md = renderReport(cpuReport());
        expect(md).toMatch(/^# Deepdive environment report\n/);
        expect(md).toContain('Deepdive 0.1.0 · probed 2025-11-28 10:34:00 UTC');
        expect(md).toContain('- torch: 2.13.0+cpu');
        expect(md).toContain('- CUDA available: no (CPU-only build)');
        expect(md).toContain('No NVIDIA GPU: NVML library not found');
        expect(md).toContain('| Version | 3.12.3 (CPython) |');
        expect(md).toContain('| Executable | `/home/u/.venv/bin/python` |');
        expect(md).toContain('| Hostname | box |');
        expect(md).toContain('| Cores | 4 physical, 8 logical |');
        expect(md).toContain('| Memory | 31.3 GiB |');
        expect(md).toContain('State directory: `/home/u/.local/state/deepdive`');
    });

    it('renders the packages table, escaping pipes', () => {
        const md = renderReport(cpuReport());
        expect(md).toContain('| Package | Version | Purpose |');
        expect(md).toContain('| torch | 2.13.0+cpu | the engine \\| training |');
        expect(md).toContain('| optuna | not installed | hyperparameter search |');
    });

    it('renders each GPU with driver and CUDA details', () => {
        const md = renderReport(gpuReport());
        expect(md).toContain('- torch: 2.5.1+cu124');
        expect(md).toContain('- CUDA available: yes (CUDA 12.4, 1 device(s))');
        expect(md).toContain('driver 550.54.15, NVML 12.550.54.15');
        expect(md).toContain('| 0 | NVIDIA H200 | 140.4 GiB | 9.0 | `GPU-1234` |');
        expect(md).not.toContain('No NVIDIA GPU');
    });

    it('says when torch is missing, with the reason', () => {
        const r = cpuReport();
        r.torch = { installed: false, error: "No module named 'torch'" };
        const md = renderReport(r);
        expect(md).toContain("- torch: not installed (No module named 'torch')");
        expect(md).not.toContain('CUDA available');
    });

    it('still explains an unavailable GPU when the daemon gave no reason', () => {
        const r = cpuReport();
        r.gpus = { available: false };
        expect(renderReport(r)).toContain('No NVIDIA GPU: no reason reported');
    });
});

describe('noGpuText', () => {
    it('prefixes a bare reason', () => {
        expect(noGpuText('NVML: no permission to access the GPU devices')).toBe('No NVIDIA GPU: NVML: no permission to access the GPU devices');
    });

    it('does not double the prefix the daemon already wrote', () => {
        expect(noGpuText('no NVIDIA GPU: NVML library not found (libnvidia-ml.so is not installed; no NVIDIA driver)')).toBe(
            'No NVIDIA GPU: NVML library not found (libnvidia-ml.so is not installed; no NVIDIA driver)',
        );
    });

    it('explains a missing reason', () => {
        expect(noGpuText(null)).toBe('No NVIDIA GPU: no reason reported');
    });
});
