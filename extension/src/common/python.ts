// The vscode side of interpreter discovery: the Python extension's API, and installing deepdive (with the
// extras the user picks, into the interpreter named by its path; see extras.ts for the pure part).
import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import { Disposable, Event, ExtensionContext, ProgressLocation, Uri, window } from 'vscode';
import { PYTHON_EXTENSION_ID } from './constants';
import {
    describeMissingExtras,
    FEATURE_EXTRAS,
    installPromptMessage,
    interpreterExecutable,
    missingExtras,
    pipInstallArgs,
} from './extras';
import { checkDeepdiveImport, discoverInterpreter, errorMessage, ImportCheck, Interpreter, nodeExec } from './interpreter';
import { traceError, traceInfo, traceVerbose } from './logging';
import { getSettings } from './settings';
import { executeCommand, getExtension, getWorkspaceFolders, isTrusted } from './vscodeapi';

/** The part of ms-python.python's exported API we use. */
interface PythonExtensionApi {
    environments: {
        getActiveEnvironmentPath(resource?: Uri): { id: string; path: string };
        resolveEnvironment(env: { id: string; path: string }): Promise<{ executable: { uri?: Uri } } | undefined>;
        onDidChangeActiveEnvironmentPath: Event<unknown>;
    };
}

const ACTIVATE_TIMEOUT_MS = 15_000;

async function pythonApi(): Promise<PythonExtensionApi | undefined> {
    const ext = getExtension<PythonExtensionApi>(PYTHON_EXTENSION_ID);
    if (!ext) {
        return undefined;
    }
    if (!ext.isActive) {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('the Python extension did not activate in time')), ACTIVATE_TIMEOUT_MS);
        });
        await Promise.race([ext.activate(), timeout]).finally(() => clearTimeout(timer));
    }
    return ext.exports?.environments ? ext.exports : undefined;
}

/** The interpreter that runs the daemon (see discoverInterpreter for the order). */
export async function resolveInterpreter(): Promise<Interpreter> {
    const hasPythonExtension = getExtension(PYTHON_EXTENSION_ID) !== undefined;
    const interpreter = await discoverInterpreter({
        setting: getSettings().pythonPath,
        trusted: isTrusted(),
        platform: process.platform,
        pythonExtension: hasPythonExtension ? activeEnvironmentPython : undefined,
        log: traceInfo,
    });
    traceInfo(`Python for the daemon: ${interpreter.path} (from ${interpreter.source})`);
    return interpreter;
}

async function activeEnvironmentPython(): Promise<string | undefined> {
    const api = await pythonApi();
    if (!api) {
        return undefined;
    }
    const resource = getWorkspaceFolders()[0]?.uri;
    const active = api.environments.getActiveEnvironmentPath(resource);
    const env = await api.environments.resolveEnvironment(active);
    traceVerbose(`Python extension active environment: ${active.path}`);
    return env?.executable.uri?.fsPath;
}

/** Calls `listener` when the Python extension's active interpreter changes (no-op without it). */
export async function onDidChangePythonInterpreter(listener: () => void): Promise<Disposable> {
    try {
        const api = await pythonApi();
        if (api) {
            return api.environments.onDidChangeActiveEnvironmentPath(() => listener());
        }
    } catch (err) {
        traceInfo(`Not following the Python extension's interpreter: ${errorMessage(err)}`);
    }
    return Disposable.from();
}

/** The Python project inside the extension; vsce stores README.md as readme.md, pyproject wants README.md. */
const PROJECT_FILES: ReadonlyArray<[from: string[], to: string, required: boolean]> = [
    [['pyproject.toml'], 'pyproject.toml', true],
    [['README.md', 'readme.md'], 'README.md', true],
    [['LICENSE', 'LICENSE.txt'], 'LICENSE', false],
    [['server'], 'server', true],
];

/**
 * `<python> -m pip install <project>[extras]`: the extension directory ships pyproject.toml and server/, so
 * it is an installable Python project. It is copied first so the build never writes into it.
 */
export async function installDeepdive(
    python: string,
    extensionPath: string,
    workDir: string,
    extras: readonly string[],
): Promise<void> {
    const src = path.join(workDir, 'python-src');
    await fs.rm(src, { recursive: true, force: true });
    for (const [candidates, to, required] of PROJECT_FILES) {
        const from = candidates.map((name) => path.join(extensionPath, name)).find((p) => existsSync(p));
        if (from) {
            await fs.cp(from, path.join(src, to), { recursive: true });
        } else if (required) {
            throw new Error(`the extension is missing ${candidates[0]}: reinstall it`);
        }
    }
    const args = pipInstallArgs(src, extras);
    await window.withProgress(
        { location: ProgressLocation.Notification, title: `Installing Deepdive${withExtras(extras)} into ${python}…` },
        async () => {
            traceInfo(`Running: ${python} ${args.join(' ')}`);
            try {
                const { stdout } = await nodeExec(python, args, { cwd: workDir, timeoutMs: 1_800_000 });
                traceVerbose(stdout);
            } catch (err) {
                const stderr = (err as { stderr?: string }).stderr ?? '';
                traceError(stderr);
                const lines = stderr.trim().split(/\r?\n/).filter(Boolean);
                const line = lines.find((l) => /^error:/i.test(l)) ?? lines.pop();
                throw new Error(`pip install failed: ${line ?? errorMessage(err)}`);
            } finally {
                await fs.rm(src, { recursive: true, force: true });
            }
        },
    );
}

function withExtras(extras: readonly string[]): string {
    return extras.length ? ` with ${extras.join(', ')}` : '';
}

/** Which features to install with the core (by pyproject.toml's extras); undefined when the pick was dismissed. */
async function pickExtras(executable: string): Promise<string[] | undefined> {
    const items = FEATURE_EXTRAS.map((f) => ({
        label: f.label,
        description: `deepdive[${f.extra}]`,
        detail: f.detail,
        picked: f.picked,
        extra: f.extra,
    }));
    const picked = await window.showQuickPick(items, {
        canPickMany: true,
        title: `Install Deepdive into ${executable}`,
        placeHolder: 'Features to install with the core package (none checked: the core alone)',
        ignoreFocusOut: true,
    });
    return picked?.map((item) => item.extra);
}

/** After pip: deepdive imports, and each picked extra's modules are there; says which are not. */
async function recheckInstall(python: string, extras: readonly string[], workDir: string): Promise<void> {
    const options = { cwd: workDir, timeoutMs: 60_000 };
    const check = await checkDeepdiveImport(python, nodeExec, options);
    if (!check.ok) {
        throw new Error(`pip finished, but ${check.reason}`);
    }
    const missing = await missingExtras(python, extras, nodeExec, options);
    if (Object.keys(missing).length) {
        void window.showWarningMessage(
            `Deepdive ${check.version} installed into ${python}, but still missing: ${describeMissingExtras(missing)}.`,
        );
    } else {
        void window.showInformationMessage(`Deepdive ${check.version} installed into ${python}${withExtras(extras)}.`);
    }
}

/** Tells the user why deepdive does not import, naming the interpreter's path, and offers the fix; true when it got installed. */
export async function offerInterpreterFix(
    python: string,
    check: Extract<ImportCheck, { ok: false }>,
    context: ExtensionContext,
): Promise<boolean> {
    const workDir = context.globalStorageUri.fsPath;
    const executable = await interpreterExecutable(python, nodeExec, { cwd: workDir, timeoutMs: 20_000 });
    const actions = check.missing ? ['Install Deepdive', 'Open Settings'] : ['Open Settings'];
    const choice = await window.showErrorMessage(installPromptMessage(check, executable), ...actions);
    if (choice === 'Install Deepdive') {
        const extras = await pickExtras(executable);
        if (!extras) {
            return false;
        }
        try {
            await installDeepdive(executable, context.extensionPath, workDir, extras);
            await recheckInstall(executable, extras, workDir);
            return true;
        } catch (err) {
            traceError(err);
            const again = await window.showErrorMessage(`Deepdive: ${errorMessage(err)}`, 'Open Settings');
            if (!again) {
                return false;
            }
        }
    } else if (!choice) {
        return false;
    }
    await executeCommand('workbench.action.openSettings', 'deepdive.pythonPath');
    return false;
}
