import { describe, expect, it } from 'vitest';
import type { CheckpointList, CheckpointRun, CheckpointStep, CheckpointVerifyResult } from '../../../extension/src/protocol';
import {
    CHECKPOINTS_VIEW, exportFileName, formatBytes, refreshesCheckpoints, runChildren, runItem, runsOf, stepItem, verifySummary,
} from '../../../extension/src/views/checkpointsModel';

function step(n: number, over: Partial<CheckpointStep> = {}): CheckpointStep {
    return {
        name: `step-${String(n).padStart(10, '0')}`, step: n, time: 1_700_000_000 + n, storedBytes: 4_200_000,
        newBytes: n === 10 ? 4_200_000 : 350_000, rawBytes: 5_000_000, tensors: 12, metrics: { val_loss: 0.25 }, latest: false, ...over,
    };
}

function run(over: Partial<CheckpointRun> = {}): CheckpointRun {
    return {
        path: '/ws/exp1/ckpt', name: 'exp1/ckpt', checkpoints: [step(10), step(20), step(30, { latest: true })],
        diskBytes: 4_900_000, rawBytes: 15_000_000, ratio: 15 / 4.9, damaged: [], args: [], nproc: 1, maxRestarts: 0, ...over,
    };
}

describe('the Checkpoints view model', () => {
    it('lists each run, and under it the run\'s checkpoints, newest step first', () => {
        const list: CheckpointList = { runs: [run(), run({ path: '/ws/b/ckpt', name: 'b/ckpt', checkpoints: [step(5)] })], truncated: false };
        const runs = runsOf(list);
        expect(runs.map((r) => runItem(r.run).label)).toEqual(['exp1/ckpt', 'b/ckpt']);
        const children = runChildren(runs[0]);
        expect(children.map((c) => stepItem(c.run, c.step).label)).toEqual(['step 30', 'step 20', 'step 10']);
        expect(CHECKPOINTS_VIEW).toBe('deepdive.checkpoints');
    });

    it('a run says how many checkpoints, its size on disk and the dedup ratio; the tooltip has the logical size', () => {
        const m = runItem(run({ script: '/ws/train.py', args: ['--epochs', '3'], nproc: 2 }));
        expect(m.description).toBe('3 checkpoints · 4.9 MB on disk · 3.06× smaller');
        expect(m.tooltip).toContain('/ws/exp1/ckpt');
        expect(m.tooltip).toContain('15.0 MB of tensors over 3 checkpoints');
        expect(m.tooltip).toContain('Resume runs: train.py --epochs 3 (×2)');
        expect(m).toMatchObject({ contextValue: 'checkpointRun', collapsible: true, icon: 'database' });
    });

    it('a run that cannot be read shows why and offers no actions', () => {
        const m = runItem(run({ checkpoints: [], error: 'no checkpoint store at /x: it has no STORE.json', ratio: null }));
        expect(m).toMatchObject({ description: 'no checkpoint store at /x: it has no STORE.json', icon: 'error',
            contextValue: 'checkpointRun.error', collapsible: false });
    });

    it('damaged manifests are named on the run', () => {
        const m = runItem(run({ damaged: ['step-0000000040'] }));
        expect(m.description).toContain('1 damaged');
        expect(m.tooltip).toContain('Not listed (damaged manifest): step-0000000040');
    });

    it('a step shows its size, what the save added, and whether it was verified', () => {
        const r = run();
        const fresh = stepItem(r, step(20));
        expect(fresh.description).toContain('4.2 MB (350.0 kB new)');
        expect(fresh.description).not.toContain('verified');
        expect(fresh.tooltip).toContain('5.0 MB of tensors (logical), 12 tensors');
        expect(fresh.tooltip).toContain('91.7% deduplicated');
        expect(fresh.tooltip).toContain('val_loss=0.25');
        expect(fresh.tooltip).toContain('not verified since it was saved');
        expect(fresh.contextValue).toBe('checkpointStep');

        const ok = stepItem(r, step(20, { verified: 'ok', verifiedAt: 1_700_000_100 }));
        expect(ok).toMatchObject({ icon: 'pass', color: 'testing.iconPassed' });
        expect(ok.description).toContain('verified');
        const bad = stepItem(r, step(30, { latest: true, verified: 'corrupt', problem: "tensor 'model.head.weight': hash mismatch" }));
        expect(bad).toMatchObject({ icon: 'error', color: 'testing.iconFailed' });
        expect(bad.description).toContain('corrupt');
        expect(bad.tooltip).toContain("tensor 'model.head.weight': hash mismatch");
        expect(bad.tooltip).toContain('latest');
    });

    it('formats sizes as the CLI does', () => {
        expect([formatBytes(999), formatBytes(1500), formatBytes(2_500_000), formatBytes(3_210_000_000)])
            .toEqual(['999 B', '1.5 kB', '2.5 MB', '3.21 GB']);
    });

    it('refreshes when a job ends or a run saves a checkpoint, not on output', () => {
        const base = { jobId: 'j', seq: 2 };
        expect(refreshesCheckpoints({ ...base, type: 'finished' })).toBe(true);
        expect(refreshesCheckpoints({ ...base, type: 'data', data: { event: 'checkpoint', step: 4 } })).toBe(true);
        expect(refreshesCheckpoints({ ...base, type: 'data', data: { event: 'metrics' } })).toBe(false);
        expect(refreshesCheckpoints({ ...base, type: 'output', lines: [] })).toBe(false);
    });

    it('summarises a verify in one line', () => {
        const ok: CheckpointVerifyResult = { store: '/ws/ckpt', checkpoints: ['a', 'b'], ok: true, problems: [], unchecked: [], seconds: 1.2 };
        expect(verifySummary(ok)).toBe('2 checkpoint(s) in /ws/ckpt verify: every chunk decodes and matches its hash');
        const bad: CheckpointVerifyResult = {
            ...ok, ok: false,
            problems: [{ checkpoint: 'b', tensor: 'model.w', chunk: 'abcdef0123456789', reason: 'hash mismatch' },
                { checkpoint: 'b', tensor: '', chunk: '', reason: 'does not match its checksum' }],
        };
        expect(verifySummary(bad)).toBe("1 of 2 checkpoint(s) damaged: b: tensor 'model.w' (chunk abcdef012345): hash mismatch (+1 more)");
    });

    it('suggests an export file named after the run and step', () => {
        expect(exportFileName(run(), step(30), 'model')).toBe('exp1-ckpt-step30-model.pt');
        expect(exportFileName(run({ name: '/abs/path/ckpt' }), step(7), undefined)).toBe('abs-path-ckpt-step7.pt');
    });
});
