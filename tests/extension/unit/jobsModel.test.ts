import { describe, expect, it } from 'vitest';
import { formatDuration, jobItem, JobsModel, renderJobLog } from '../../../extension/src/views/jobsModel';
import { job } from './fixtures';

describe('jobItem', () => {
    it('running: spinner, progress % and message, cancellable', () => {
        const m = jobItem(job({ progress: 0.426, message: 'matmul 2048x2048' }), 1065);
        expect(m).toMatchObject({
            label: 'Deep environment check',
            description: '43% — matmul 2048x2048',
            icon: 'sync~spin',
            contextValue: 'job.running',
        });
        expect(m.tooltip).toContain('running for 1m 05s');
        expect(m.tooltip).toContain('pid: 4242');
    });

    it('running without progress yet', () => {
        expect(jobItem(job(), 1000).description).toBe('running');
    });

    it.each([
        ['succeeded', 'pass', 'testing.iconPassed'],
        ['failed', 'error', 'testing.iconFailed'],
        ['cancelled', 'circle-slash', 'disabledForeground'],
        ['lost', 'question', 'list.warningForeground'],
    ] as const)('%s: icon, duration, reason and exit code', (state, icon, color) => {
        const m = jobItem(job({ state, endedAt: 1012, exitCode: state === 'failed' ? 3 : 0, reason: `why ${state}` }), 2000);
        expect(m).toMatchObject({ icon, color, contextValue: `job.${state}`, description: `${state} in 12s` });
        expect(m.tooltip).toContain(`reason: why ${state}`);
        expect(m.tooltip).toContain(`exit code: ${state === 'failed' ? 3 : 0}`);
        expect(m.tooltip).not.toContain('running for');
    });
});

describe('JobsModel', () => {
    it('lists newest first', () => {
        const m = new JobsModel();
        m.replaceAll([job({ id: 'a', createdAt: 1 }), job({ id: 'c', createdAt: 3 }), job({ id: 'b', createdAt: 2 })]);
        expect(m.list().map((j) => j.id)).toEqual(['c', 'b', 'a']);
    });

    it('applies started, progress and finished events', () => {
        const m = new JobsModel();
        expect(m.apply({ jobId: 'j1', type: 'started', seq: 1, job: job() })).toBe('changed');
        expect(m.apply({ jobId: 'j1', type: 'progress', seq: 2, progress: { fraction: 0.5, message: 'half' } })).toBe('changed');
        expect(m.get('j1')).toMatchObject({ progress: 0.5, message: 'half' });
        expect(m.apply({ jobId: 'j1', type: 'output', seq: 3, lines: [{ stream: 'stdout', text: 'x', t: 0 }] })).toBe('unchanged');
        expect(m.apply({ jobId: 'j1', type: 'finished', seq: 4, job: job({ state: 'succeeded', progress: 1 }) })).toBe('changed');
        expect(m.get('j1')?.state).toBe('succeeded');
    });

    it('ignores duplicate or late events', () => {
        const m = new JobsModel();
        m.apply({ jobId: 'j1', type: 'started', seq: 1, job: job() });
        m.apply({ jobId: 'j1', type: 'finished', seq: 2, job: job({ state: 'cancelled' }) });
        expect(m.apply({ jobId: 'j1', type: 'started', seq: 1, job: job() })).toBe('unchanged');
        expect(m.get('j1')?.state).toBe('cancelled');
    });

    it('asks for a re-list after a gap or for an unknown job', () => {
        const m = new JobsModel();
        expect(m.apply({ jobId: 'x', type: 'progress', seq: 5, progress: { fraction: 0.1 } })).toBe('resync');
        m.apply({ jobId: 'j1', type: 'started', seq: 1, job: job() });
        expect(m.apply({ jobId: 'j1', type: 'progress', seq: 3, progress: { fraction: 0.2 } })).toBe('resync');
    });

    it('upsert from a request never undoes a finished state', () => {
        const m = new JobsModel();
        m.apply({ jobId: 'j1', type: 'finished', seq: 2, job: job({ state: 'succeeded' }) });
        m.upsert(job({ state: 'running' }));
        expect(m.get('j1')?.state).toBe('succeeded');
        m.upsert(job({ id: 'j2', state: 'running' }));
        m.upsert(job({ id: 'j2', state: 'cancelled' }));
        expect(m.get('j2')?.state).toBe('cancelled');
    });
});

describe('formatDuration / renderJobLog', () => {
    it('formats durations', () => {
        expect([formatDuration(0), formatDuration(59.6), formatDuration(65), formatDuration(3725)]).toEqual(['0s', '1m 00s', '1m 05s', '1h 02m']);
    });

    it('renders a log with a header, stderr marks and the truncation note', () => {
        const text = renderJobLog(job({ state: 'failed', reason: 'exit code 1' }), [
            { stream: 'stdout', text: 'torch 2.13.0+cpu' },
            { stream: 'stderr', text: 'boom' },
        ], true);
        expect(text).toBe('# Deep environment check (doctor-deep) — failed: exit code 1\n… (older lines were dropped)\ntorch 2.13.0+cpu\n[stderr] boom\n');
    });
});
