import { describe, expect, it } from 'vitest';
import { Commands } from '../../../extension/src/common/constants';
import { notRunningLabel, presentStatus } from '../../../extension/src/common/status';

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
