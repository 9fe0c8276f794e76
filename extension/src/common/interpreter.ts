// Which Python runs the daemon, and whether `deepdive` imports there. Pure logic plus a Node
// `execFile` adapter; no `vscode` import, so the unit tests exercise every branch.
import { execFile } from 'child_process';

export type InterpreterSource = 'setting' | 'python-extension' | 'default';

export interface Interpreter {
    path: string;
    source: InterpreterSource;
}

export interface DiscoveryInputs {
    /** The resolved `deepdive.pythonPath`; '' when unset. */
    setting: string;
    /** Workspace trust: untrusted workspaces never use the workspace's Python environment. */
    trusted: boolean;
    platform: NodeJS.Platform;
    /** Asks the Python extension for its active interpreter; absent when that extension is not installed. */
    pythonExtension?: () => Promise<string | undefined>;
    log?: (message: string) => void;
}

/** Order: `deepdive.pythonPath`, then the Python extension's active environment, then `python3` (`python` on Windows). */
export async function discoverInterpreter(inputs: DiscoveryInputs): Promise<Interpreter> {
    const log = inputs.log ?? (() => undefined);
    if (inputs.setting) {
        return { path: inputs.setting, source: 'setting' };
    }
    if (!inputs.trusted) {
        log('Untrusted workspace: not using the Python extension\'s (workspace) environment.');
    } else if (inputs.pythonExtension) {
        try {
            const path = await inputs.pythonExtension();
            if (path) {
                return { path, source: 'python-extension' };
            }
            log('The Python extension has no active environment.');
        } catch (err) {
            log(`Asking the Python extension for its interpreter failed: ${errorMessage(err)}`);
        }
    }
    return { path: inputs.platform === 'win32' ? 'python' : 'python3', source: 'default' };
}

export interface ExecOptions {
    cwd: string;
    timeoutMs: number;
}

export interface ExecResult {
    stdout: string;
    stderr: string;
}

/** Rejects like `child_process.execFile`: an Error with `code`, `killed` and `stderr`. */
export type Exec = (file: string, args: string[], options: ExecOptions) => Promise<ExecResult>;

export type ImportCheck =
    | { ok: true; version: string }
    | { ok: false; reason: string; /** deepdive is simply not installed there: offer to install it. */ missing: boolean };

export const IMPORT_CHECK_SCRIPT = 'import deepdive,sys; print(deepdive.__version__)';

/** Runs `<python> -c "import deepdive..."` and says why it failed, in one line, when it does. */
export async function checkDeepdiveImport(python: string, exec: Exec, options: ExecOptions): Promise<ImportCheck> {
    try {
        const { stdout } = await exec(python, ['-c', IMPORT_CHECK_SCRIPT], options);
        return { ok: true, version: stdout.trim() };
    } catch (err) {
        return { ok: false, ...classifyImportFailure(python, err, options.timeoutMs) };
    }
}

export function classifyImportFailure(
    python: string,
    err: unknown,
    timeoutMs: number,
): { reason: string; missing: boolean } {
    const e = (err ?? {}) as { code?: unknown; killed?: boolean; signal?: string | null; stderr?: string };
    if (e.code === 'ENOENT') {
        return { reason: `Python interpreter not found: ${python}`, missing: false };
    }
    if (e.code === 'EACCES') {
        return { reason: `Python interpreter is not executable: ${python}`, missing: false };
    }
    if (e.killed || e.signal === 'SIGTERM') {
        return { reason: `importing deepdive with ${python} timed out after ${timeoutMs / 1000} s`, missing: false };
    }
    const stderr = (e.stderr ?? '').trim();
    if (/No module named '?deepdive'?\s*$/m.test(stderr)) {
        return { reason: `deepdive is not installed for ${python}`, missing: true };
    }
    const last = stderr.split(/\r?\n/).pop() || errorMessage(err);
    return { reason: `importing deepdive with ${python} failed: ${last}`, missing: false };
}

/** `child_process.execFile` as an `Exec`. */
export const nodeExec: Exec = (file, args, options) =>
    new Promise((resolve, reject) => {
        execFile(
            file,
            args,
            { cwd: options.cwd, timeout: options.timeoutMs, maxBuffer: 16 * 1024 * 1024, windowsHide: true },
            (error, stdout, stderr) => {
                if (error) {
                    const failure: Error = Object.assign(error, { stdout, stderr });
                    reject(failure);
                } else {
                    resolve({ stdout, stderr });
                }
            },
        );
    });

export function errorMessage(err: unknown): string {
    return err instanceof Error ? err.message : String(err);
}
