import { describe, expect, it } from 'vitest';
import { Commands } from '../../../extension/src/common/constants';
import { notRunningLabel, presentStatus, presentTelemetry } from '../../../extension/src/common/status';

// The end-to-end harness waits on these status bar texts: keep them in step with its checks.
describe('presentStatus', () => {
    it('ready: a pulse, version, pid and python in the tooltip, click opens the report', () => {
        const p = presentStatus({
            state: 'ready',
            python: '/py',
            version: { version: '0.1.0', python: '3.12.3', pid: 1234, startedAt: 0, protocol: 1 },
        });
        expect(p.text).toBe('$(pulse) Deepdive');
        expect(p.tooltip).toContain('Deepdive 0.1.0 — daemon pid 1234');
        expect(p.tooltip).toContain('Python 3.12.3 (/py)');
        expect(p.command).toBe(Commands.showEnvironmentReport);
        expect(p.isError).toBe(false);
    });

    it.each([
        ['starting', '$(sync~spin) Deepdive: starting', Commands.showEnvironmentReport, false],
        ['restarting', '$(sync~spin) Deepdive: restarting', Commands.showEnvironmentReport, false],
        ['stopped', '$(circle-slash) Deepdive: stopped', Commands.restartServer, false],
        ['error', '$(error) Deepdive: error', Commands.restartServer, true],
    ] as const)('%s', (state, text, command, isError) => {
        const p = presentStatus({ state, reason: 'deepdive is not installed for /py' });
        expect(p).toMatchObject({ text, command, isError });
    });

    it('puts the reason in the error tooltip', () => {
        expect(presentStatus({ state: 'error', reason: 'boom' }).tooltip).toContain('not running: boom');
    });
});

describe('notRunningLabel', () => {
    it('names the reason', () => {
        expect(notRunningLabel({ state: 'error', reason: 'Python interpreter not found: /x' })).toBe(
            'Deepdive server is not running — Python interpreter not found: /x',
        );
    });

    it('says the server is starting rather than not running while it starts', () => {
        expect(notRunningLabel({ state: 'starting' })).toBe('Deepdive server is starting…');
    });
});

describe('presentTelemetry', () => {
    const now = 1_800_000_000_000;
    const base = { t: now / 1000 - 1, gpuCount: 0, runs: [] };

    it('shows the training run throughput while one reports', () => {
        const p = presentTelemetry(
            { ...base, gpuUtil: 87, gpuCount: 2, hostCpu: 40, runs: [{ runId: 'r1', jobId: 'j1', value: 12345.6, unit: 'samples/s', step: 300 }] },
            now,
        );
        expect(p?.text).toBe('$(rocket) 12.3k samples/s');
        expect(p?.tooltip).toContain('Run r1 (job j1): 12.3k samples/s at step 300');
        expect(p?.tooltip).toContain('GPU 87% (mean of 2)');
    });

    it('shows GPU utilisation when no run reports', () => {
        expect(presentTelemetry({ ...base, gpuUtil: 42.4, gpuCount: 1, hostCpu: 5 }, now)?.text).toBe('$(pulse) GPU 42%');
    });

    it('shows nothing without a GPU or a run, but gives the GPU reason next to a run', () => {
        expect(presentTelemetry({ ...base, gpuReason: 'no NVIDIA GPU: NVML library not found', hostCpu: 3 }, now)).toBeUndefined();
        const p = presentTelemetry(
            { ...base, gpuReason: 'no NVIDIA GPU: NVML library not found', runs: [{ runId: 'r', value: 3.25, unit: 'steps/s' }] },
            now,
        );
        expect(p?.text).toBe('$(rocket) 3.25 steps/s');
        expect(p?.tooltip).toContain('no NVIDIA GPU: NVML library not found');
    });

    it('ignores a stale summary', () => {
        expect(presentTelemetry({ ...base, t: now / 1000 - 60, gpuUtil: 99, gpuCount: 1 }, now)).toBeUndefined();
    });
});
