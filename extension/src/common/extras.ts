// What "Install Deepdive" installs: the core package plus the extras the user picks, by feature, into
// one named interpreter. Pure logic plus `Exec` calls; no `vscode` import, so the unit tests run it all.
// The extras' names are pyproject.toml's (a unit test checks them there); which modules each extra
// brings is Python's table (deepdive.extras), asked for after the install, never copied here.
import { errorMessage, Exec, ExecOptions } from './interpreter';

/** One feature the install prompt offers; `extra` is its name in pyproject.toml's optional-dependencies. */
export interface FeatureExtra {
    extra: string;
    label: string;
    detail: string;
    /** Preselected: what the extension's own commands (train, tune) need. */
    picked: boolean;
}

/** By feature, in the order the prompt shows them. */
export const FEATURE_EXTRAS: readonly FeatureExtra[] = [
    {
        extra: 'engine',
        label: 'Engine',
        detail: 'deepdive.engine for training scripts, `deepdive train`, checkpoints: torch, numpy, zstandard, xxhash',
        picked: true,
    },
    { extra: 'tune', label: 'Tune', detail: 'hyperparameter search: optuna, scipy, cmaes', picked: true },
    {
        extra: 'compress',
        label: 'Compress',
        detail: 'structured pruning and weight-only quantization: torch-pruning, torchao',
        picked: false,
    },
    {
        extra: 'llm',
        label: 'Code generation with a local model',
        detail: 'Hugging Face model folders: transformers, tokenizers (large)',
        picked: false,
    },
];

/** pip's requirement for the project folder `src` with `extras`: `/path/src[engine,tune]` (no shell: no quoting). */
export function installTarget(src: string, extras: readonly string[]): string {
    return extras.length ? `${src}[${extras.join(',')}]` : src;
}

/** The arguments after the interpreter: `-m pip install <src>[extras]`. */
export function pipInstallArgs(src: string, extras: readonly string[]): string[] {
    return ['-m', 'pip', 'install', installTarget(src, extras)];
}

/** The install prompt's text: why deepdive does not import, naming the interpreter by its absolute path. */
export function installPromptMessage(check: { reason: string; missing: boolean }, executable: string): string {
    if (check.missing) {
        return `Deepdive is not installed for the Python at ${executable}. Install it there?`;
    }
    return `Deepdive: ${check.reason} (Python at ${executable}).`;
}

export const EXECUTABLE_SCRIPT = 'import sys; print(sys.executable)';

/**
 * The absolute path of `python` (`python3` found on PATH becomes `/usr/bin/python3`): the prompt names the
 * environment pip will write into. Falls back to `python` as given when it cannot be run.
 */
export async function interpreterExecutable(python: string, exec: Exec, options: ExecOptions): Promise<string> {
    try {
        const { stdout } = await exec(python, ['-c', EXECUTABLE_SCRIPT], options);
        return stdout.trim() || python;
    } catch {
        return python;
    }
}

export const EXTRAS_CHECK_SCRIPT =
    'import json, sys; from deepdive.extras import extras_not_importable; print(json.dumps(extras_not_importable(sys.argv[1:])))';

/** After the install: each picked extra whose modules the interpreter still cannot find (empty: all there). */
export async function missingExtras(
    python: string,
    extras: readonly string[],
    exec: Exec,
    options: ExecOptions,
): Promise<Record<string, string[]>> {
    if (!extras.length) {
        return {};
    }
    let stdout: string;
    try {
        ({ stdout } = await exec(python, ['-c', EXTRAS_CHECK_SCRIPT, ...extras], options));
    } catch (err) {
        const stderr = ((err as { stderr?: string }).stderr ?? '').trim();
        throw new Error(`checking the installed extras failed: ${stderr.split(/\r?\n/).pop() || errorMessage(err)}`);
    }
    return JSON.parse(stdout) as Record<string, string[]>;
}

/** One line for what `missingExtras` found: `tune (optuna, scipy)`. */
export function describeMissingExtras(missing: Record<string, string[]>): string {
    return Object.entries(missing)
        .map(([extra, modules]) => `${extra} (${modules.join(', ')})`)
        .join('; ');
}
