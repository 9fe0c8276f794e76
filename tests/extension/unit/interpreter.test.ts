import { existsSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it, vi } from 'vitest';
import {
    checkDeepdiveImport,
    discoverInterpreter,
    Exec,
    IMPORT_CHECK_SCRIPT,
    nodeExec,
} from '../../../extension/src/common/interpreter';

const base = { setting: '', trusted: true, platform: 'linux' as NodeJS.Platform };
const opts = { cwd: os.tmpdir(), timeoutMs: 20_000 };

describe('discoverInterpreter', () => {
    it('prefers deepdive.pythonPath over everything', async () => {
        const pythonExtension = vi.fn(() => Promise.resolve('/ext/python'));
        const got = await discoverInterpreter({ ...base, setting: '/opt/py/bin/python', pythonExtension });
        expect(got).toEqual({ path: '/opt/py/bin/python', source: 'setting' });
        expect(pythonExtension).not.toHaveBeenCalled();
    });

    it('uses the Python extension\'s active environment next', async () => {
        const got = await discoverInterpreter({ ...base, pythonExtension: () => Promise.resolve('/ws/.venv/bin/python') });
        expect(got).toEqual({ path: '/ws/.venv/bin/python', source: 'python-extension' });
    });

    it('falls back to python3 without the Python extension', async () => {
        expect(await discoverInterpreter(base)).toEqual({ path: 'python3', source: 'default' });
    });

    it('falls back to python on Windows', async () => {
        expect((await discoverInterpreter({ ...base, platform: 'win32' })).path).toBe('python');
    });

    it('falls back when the Python extension has no environment', async () => {
        const log = vi.fn();
        const got = await discoverInterpreter({ ...base, pythonExtension: () => Promise.resolve(undefined), log });
        expect(got.source).toBe('default');
        expect(log).toHaveBeenCalledWith(expect.stringContaining('no active environment'));
    });

    it('fails soft when the Python extension throws', async () => {
        const log = vi.fn();
        const got = await discoverInterpreter({
            ...base,
            pythonExtension: () => Promise.reject(new Error('did not activate in time')),
            log,
        });
        expect(got).toEqual({ path: 'python3', source: 'default' });
        expect(log).toHaveBeenCalledWith(expect.stringContaining('did not activate in time'));
    });

    it('never asks the Python extension in an untrusted workspace', async () => {
        const pythonExtension = vi.fn(() => Promise.resolve('/ws/.venv/bin/python'));
        const got = await discoverInterpreter({ ...base, trusted: false, pythonExtension });
        expect(got.source).toBe('default');
        expect(pythonExtension).not.toHaveBeenCalled();
    });

    it('still honours the (user-level) setting when untrusted', async () => {
        const got = await discoverInterpreter({ ...base, trusted: false, setting: '/usr/bin/python3.12' });
        expect(got.source).toBe('setting');
    });
});

function failing(error: object): Exec {
    return () => Promise.reject(Object.assign(new Error('Command failed'), error));
}

describe('checkDeepdiveImport', () => {
    it('reports the version when deepdive imports', async () => {
        const exec = vi.fn<Exec>(() => Promise.resolve({ stdout: '0.1.0\n', stderr: '' }));
        expect(await checkDeepdiveImport('/py', exec, opts)).toEqual({ ok: true, version: '0.1.0' });
        expect(exec).toHaveBeenCalledWith('/py', ['-c', IMPORT_CHECK_SCRIPT], opts);
    });

    it('says deepdive is missing (and can be installed) on ModuleNotFoundError', async () => {
        const stderr = 'Traceback (most recent call last):\n  File "<string>", line 1\nModuleNotFoundError: No module named \'deepdive\'\n';
        expect(await checkDeepdiveImport('/py', failing({ code: 1, stderr }), opts)).toEqual({
            ok: false,
            reason: 'deepdive is not installed for /py',
            missing: true,
        });
    });

    it('names a missing interpreter', async () => {
        const got = await checkDeepdiveImport('/nope/python', failing({ code: 'ENOENT' }), opts);
        expect(got).toEqual({ ok: false, reason: 'Python interpreter not found: /nope/python', missing: false });
    });

    it('names a timeout', async () => {
        const got = await checkDeepdiveImport('/py', failing({ killed: true, signal: 'SIGTERM' }), opts);
        expect(got).toMatchObject({ ok: false, missing: false, reason: 'importing deepdive with /py timed out after 20 s' });
    });

    it('quotes the last line of any other import error', async () => {
        const stderr = 'Traceback...\nImportError: cannot import name \'x\' from \'pygls\'\n';
        const got = await checkDeepdiveImport('/py', failing({ code: 1, stderr }), opts);
        expect(got).toMatchObject({ ok: false, missing: false, reason: "importing deepdive with /py failed: ImportError: cannot import name 'x' from 'pygls'" });
    });

    it('classifies a real missing executable through execFile', async () => {
        const missing = path.join(os.tmpdir(), 'deepdive-no-such-python');
        const got = await checkDeepdiveImport(missing, nodeExec, opts);
        expect(got).toEqual({ ok: false, reason: `Python interpreter not found: ${missing}`, missing: false });
    });

    const venvPython = path.resolve(__dirname, '../../../.venv/bin/python');
    it.skipIf(!existsSync(venvPython))('imports deepdive from the repository venv', async () => {
        const got = await checkDeepdiveImport(venvPython, nodeExec, opts);
        expect(got).toMatchObject({ ok: true, version: expect.stringMatching(/^\d+\.\d+/) as unknown });
    });
});
