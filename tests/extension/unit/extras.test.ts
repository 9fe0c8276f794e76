// "Install Deepdive": the prompt names the interpreter by its absolute path, offers the extras by feature
// (pyproject.toml's real names), installs `<python> -m pip install <src>[picked]`, and re-checks after.
// Real interpreters through execFile (the repository venv, `python3` on PATH); no vscode here.
import { execFileSync } from 'child_process';
import { existsSync, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import {
    describeMissingExtras,
    FEATURE_EXTRAS,
    installPromptMessage,
    interpreterExecutable,
    missingExtras,
    pipInstallArgs,
} from '../../../extension/src/common/extras';
import { checkDeepdiveImport, Exec, nodeExec } from '../../../extension/src/common/interpreter';

const repo = path.resolve(__dirname, '../../..');
const venvPython = path.join(repo, '.venv', 'bin', 'python');
const opts = { cwd: os.tmpdir(), timeoutMs: 30_000 };

/** The keys of pyproject.toml's [project.optional-dependencies] table. */
function pyprojectExtras(): string[] {
    const text = readFileSync(path.join(repo, 'pyproject.toml'), 'utf8');
    const start = text.indexOf('[project.optional-dependencies]');
    expect(start).toBeGreaterThanOrEqual(0);
    const rest = text.slice(start).split(/\r?\n/).slice(1);
    const end = rest.findIndex((line) => /^\[/.test(line));
    return (end < 0 ? rest : rest.slice(0, end))
        .map((line) => /^([A-Za-z0-9_.-]+)\s*=/.exec(line)?.[1])
        .filter((name): name is string => !!name);
}

function onPath(command: string): boolean {
    try {
        execFileSync(command, ['-c', 'pass'], { stdio: 'ignore', timeout: 30_000 });
        return true;
    } catch {
        return false;
    }
}

describe('the features the install prompt offers', () => {
    it('are engine, tune, compress and llm, each a real extra of pyproject.toml', () => {
        expect(FEATURE_EXTRAS.map((f) => f.extra)).toEqual(['engine', 'tune', 'compress', 'llm']);
        const declared = pyprojectExtras();
        expect(declared).toContain('dev'); // the parse found the table
        for (const feature of FEATURE_EXTRAS) {
            expect(declared, `${feature.extra} is not in pyproject.toml`).toContain(feature.extra);
        }
    });

    it('preselect what train and tune need; the large optional ones are left to the user', () => {
        expect(FEATURE_EXTRAS.filter((f) => f.picked).map((f) => f.extra)).toEqual(['engine', 'tune']);
    });
});

describe('the install command', () => {
    it('installs the project folder with the picked extras', () => {
        expect(pipInstallArgs('/s/python-src', ['engine', 'tune'])).toEqual(['-m', 'pip', 'install', '/s/python-src[engine,tune]']);
    });

    it('installs the core alone when nothing is picked', () => {
        expect(pipInstallArgs('/s/python-src', [])).toEqual(['-m', 'pip', 'install', '/s/python-src']);
    });
});

describe('the install prompt', () => {
    it.skipIf(!onPath('python3'))('names the absolute path of a python3 found on PATH', async () => {
        const executable = await interpreterExecutable('python3', nodeExec, opts);
        expect(path.isAbsolute(executable)).toBe(true);
        expect(existsSync(executable)).toBe(true);
        const message = installPromptMessage({ reason: 'deepdive is not installed for python3', missing: true }, executable);
        expect(message).toBe(`Deepdive is not installed for the Python at ${executable}. Install it there?`);
    });

    it('names the interpreter after any other import failure too', () => {
        const message = installPromptMessage({ reason: 'importing deepdive with python3 failed: ImportError: x', missing: false }, '/usr/bin/python3');
        expect(message).toBe('Deepdive: importing deepdive with python3 failed: ImportError: x (Python at /usr/bin/python3).');
    });

    it('keeps the path as given when the interpreter cannot run', async () => {
        const missing = path.join(os.tmpdir(), 'deepdive-no-such-python');
        expect(await interpreterExecutable(missing, nodeExec, opts)).toBe(missing);
    });
});

describe('the re-check after the install', () => {
    it.skipIf(!existsSync(venvPython))('finds every module of the picked extras in the repository venv', async () => {
        expect((await checkDeepdiveImport(venvPython, nodeExec, opts)).ok).toBe(true);
        expect(await missingExtras(venvPython, ['engine', 'tune', 'compress', 'llm'], nodeExec, opts)).toEqual({});
    });

    it('says which modules of which extra are still missing', () => {
        expect(describeMissingExtras({ tune: ['optuna', 'scipy'], engine: ['xxhash'] })).toBe('tune (optuna, scipy); engine (xxhash)');
    });

    it('fails in one line when the check cannot run', async () => {
        const failing: Exec = () => Promise.reject(Object.assign(new Error('exit 1'), {
            code: 1, stderr: "Traceback...\nModuleNotFoundError: No module named 'deepdive.extras'\n",
        }));
        await expect(missingExtras('/py', ['tune'], failing, opts)).rejects.toThrow(
            "checking the installed extras failed: ModuleNotFoundError: No module named 'deepdive.extras'");
    });
});
