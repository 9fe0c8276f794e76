import { describe, expect, it } from 'vitest';
import { applyTerminalEnvironment, HUB_VARIABLE, terminalVariables } from '../../../extension/src/common/terminalEnv';
import { parseTrainArgs, splitArgs, trainLensLine, trainOptions, trainTitle } from '../../../extension/src/train/args';

describe('Train: where the CodeLens goes', () => {
    it('sits on the engine setup call, else the engine import', () => {
        const script = ['"""Trains with dd.setup( in a docstring."""', 'import torch', 'import deepdive.engine as dd', '',
            'def main():', '    run = dd.setup(precision="auto")  # the run', ''].join('\n');
        expect(trainLensLine(script)).toBe(5);
        expect(trainLensLine('from deepdive import engine\nx = 1\n')).toBe(0);
        expect(trainLensLine('import torch\nfrom deepdive.engine import setup\n')).toBe(1);
    });
    it('sits on main() of a script that follows the generated-program contract', () => {
        const contract = ['import torch', 'def build_model():', '    return None', 'def main():', '    pass',
            'if __name__ == "__main__":', '    main()'].join('\n');
        expect(trainLensLine(contract)).toBe(3);
    });
    it('is absent from other scripts and from mentions in comments or strings', () => {
        expect(trainLensLine('import torch\n# import deepdive.engine\nprint("dd.setup(")\n')).toBeUndefined();
        expect(trainLensLine('def main():\n    pass\n')).toBeUndefined();
    });
});

describe('Train: the job options', () => {
    it('passes only what was chosen; auto leaves the script its choice', () => {
        expect(trainOptions('/w/t.py', { nproc: 1, precision: 'auto', gradCompression: 'powersgd', args: ['--epochs', '2'] }))
            .toEqual({ path: '/w/t.py', nproc: 1, args: ['--epochs', '2'] });  // compression needs several processes
        expect(trainOptions('/w/t.py', { nproc: 2, precision: 'bf16', gradCompression: 'powersgd', checkpointDir: 'ck', fresh: true }))
            .toEqual({ path: '/w/t.py', nproc: 2, args: [], precision: 'bf16', grad_compression: 'powersgd', checkpoint_dir: 'ck', fresh: true });
        expect(trainTitle('t.py', { nproc: 2, precision: 'bf16', checkpointDir: 'ck' })).toBe('Train t.py (2 processes, bf16, checkpoints, resumes)');
    });
    it('parses command arguments and drops what is not valid', () => {
        expect(parseTrainArgs({ path: 'a.py', nproc: 0, precision: 'fp8', gradCompression: 'topk', args: ['x'], wait: true }))
            .toEqual({ path: 'a.py', gradCompression: 'topk', args: ['x'], wait: true });
        expect(parseTrainArgs('file:///w/a.py')).toEqual({ uri: 'file:///w/a.py' });
    });
    it('splits the typed arguments like a shell, without expanding anything', () => {
        expect(splitArgs('--epochs 5  --name "my run" --glob \'*.py\' $HOME a\\ b ""')).toEqual(
            ['--epochs', '5', '--name', 'my run', '--glob', '*.py', '$HOME', 'a b', '']);
        expect(() => splitArgs('--name "open')).toThrow('unterminated double quote');
    });
});

describe('Terminals get the hub', () => {
    const info = { running: true, ingestUrl: 'ws://127.0.0.1:4242/ingest?token=abc', token: 'abc' };
    it('sets DEEPDIVE_HUB with the token, replacing what an earlier daemon set', () => {
        const values = new Map<string, string>([[HUB_VARIABLE, 'ws://127.0.0.1:1/ingest?token=old'], ['OTHER', 'x']]);
        const collection = {
            persistent: true, description: '',
            clear: () => values.clear(),
            replace: (name: string, value: string) => values.set(name, value),
        };
        applyTerminalEnvironment(collection as never, info);
        expect([...values.entries()]).toEqual([[HUB_VARIABLE, info.ingestUrl]]);
        expect(collection.persistent).toBe(false);  // the token is new at each daemon start
        expect(collection.description).toContain('DEEPDIVE_HUB');
        applyTerminalEnvironment(collection as never, { running: false, reason: 'port in use' });
        expect(values.size).toBe(0);
    });
    it('gives nothing without a running hub', () => {
        expect(terminalVariables(undefined)).toEqual({});
        expect(terminalVariables({ running: true, ingestUrl: null })).toEqual({});
    });
});

describe('Jobs view: a run from a terminal', () => {
    it('is listed with where it runs and offers neither Cancel nor Show Output', async () => {
        const { jobItem } = await import('../../../extension/src/views/jobsModel');
        const { job } = await import('./fixtures');
        const m = jobItem(job({ kind: 'terminal', title: 'train digits.py (terminal)', message: '1 process(es), fp32' }), 1065);
        expect(m.contextValue).toBe('terminal.running');  // package.json offers Cancel only on job.running
        expect(m.description).toBe('running — 1 process(es), fp32');
        expect(m.tooltip).toContain('Ctrl-C there stops it');
    });
});

describe('job progress notification', () => {
    it('adds only what the job advanced, never goes back, and keeps the message', async () => {
        const { progressStep } = await import('../../../extension/src/common/progressStep');
        expect(progressStep(0, 0.25, 'epoch 1, step 5/20')).toEqual({ increment: 25, message: 'epoch 1, step 5/20' });
        expect(progressStep(25, 0.2, 'restarted')).toEqual({ increment: 0, message: 'restarted' });
        expect(progressStep(25, null, 'step 7')).toEqual({ increment: 0, message: 'step 7' });  // no total: indeterminate
        expect(progressStep(90, 1.5, undefined)).toEqual({ increment: 10, message: undefined });
    });
});
