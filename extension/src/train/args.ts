// The Train command's arguments (palette, CodeLens, tests), the daemon job's options they make, where the
// Train CodeLens goes, and the script-argument splitting. No `vscode` import: unit tests load this.
import { codeLines } from '../tune/finder';
import { TrainOptions, Vocabularies } from '../protocol';
import { parseScriptRef, ScriptRef, withoutUndefined } from '../common/scriptArgs';

export type Precision = (typeof Vocabularies.trainPrecisions)[number];
export type GradCompression = (typeof Vocabularies.gradCompressions)[number];

export interface TrainArgs extends ScriptRef {
    /** Processes on this machine (torchrun --nproc-per-node). */
    nproc?: number;
    precision?: Precision;
    gradCompression?: GradCompression;
    /** The engine's checkpoint folder (relative to the script's folder or absolute); '' for none. */
    checkpointDir?: string;
    /** Ignore the checkpoints already in the folder (start from step 0). */
    fresh?: boolean;
}

export const MAX_NPROC = 1024;

/** A URI string, a vscode.Uri (anything with a scheme and toString), or an object of TrainArgs. */
export function parseTrainArgs(arg: unknown): TrainArgs {
    const { ref, rest: a } = parseScriptRef(arg);
    if (!a) {
        return ref;
    }
    const out: TrainArgs = { ...ref };
    if (typeof a.nproc === 'number' && Number.isInteger(a.nproc) && a.nproc >= 1 && a.nproc <= MAX_NPROC) {
        out.nproc = a.nproc;
    }
    if ((Vocabularies.trainPrecisions as readonly unknown[]).includes(a.precision)) {
        out.precision = a.precision as Precision;
    }
    if ((Vocabularies.gradCompressions as readonly unknown[]).includes(a.gradCompression)) {
        out.gradCompression = a.gradCompression as GradCompression;
    }
    if (typeof a.checkpointDir === 'string') {
        out.checkpointDir = a.checkpointDir.trim();
    }
    if (a.fresh === true) {
        out.fresh = true;
    }
    return withoutUndefined(out);
}

/** The `train` job's options (the protocol's TrainOptions): only what was chosen; "auto" leaves the script's choice. */
export function trainOptions(scriptPath: string, a: TrainArgs): TrainOptions {
    const options: TrainOptions = { path: scriptPath, nproc: a.nproc ?? 1, args: a.args ?? [] };
    if (a.precision && a.precision !== 'auto') {
        options.precision = a.precision;
    }
    if (a.gradCompression && a.gradCompression !== 'auto' && (a.nproc ?? 1) > 1) {
        options.grad_compression = a.gradCompression;
    }
    if (a.checkpointDir) {
        options.checkpoint_dir = a.checkpointDir;
        if (a.fresh) {
            options.fresh = true;
        }
    }
    return options;
}

/** The job's title: the script, the processes and what was chosen other than "auto". */
export function trainTitle(file: string, a: TrainArgs): string {
    const parts = [`${a.nproc ?? 1} process${(a.nproc ?? 1) === 1 ? '' : 'es'}`];
    if (a.precision && a.precision !== 'auto') {
        parts.push(a.precision);
    }
    if (a.gradCompression && a.gradCompression !== 'auto' && (a.nproc ?? 1) > 1) {
        parts.push(`${a.gradCompression} gradients`);
    }
    if (a.checkpointDir) {
        parts.push(a.fresh ? 'checkpoints, fresh start' : 'checkpoints, resumes');
    }
    return `Train ${file} (${parts.join(', ')})`;
}

const ENGINE_IMPORT = /^\s*(import\s+deepdive\.engine\b|from\s+deepdive\.engine\b|from\s+deepdive\s+import\s+[^#]*\bengine\b)/;
const SETUP_CALL = /(^|[^\w.])(dd|engine|deepdive\.engine)\s*\.\s*setup\s*\(/;
const CONTRACT = [/^\s*def\s+build_model\s*\(/, /^\s*def\s+main\s*\(/, /^\s*if\s+__name__\s*==\s*\S/];  // (string literals are blanked)

/**
 * Where the Train CodeLens goes (a zero-based line), or undefined when the script is not one to train:
 * the line of its engine `setup(` call, else of its `deepdive.engine` import; a script without the
 * engine that follows the generated-program contract (`build_model()`, `main()`, the `__main__` guard)
 * gets it on its `def main(` line.
 */
export function trainLensLine(source: string): number | undefined {
    const raw = source.split(/\r\n|\r|\n/);
    const code = codeLines(source);
    let importLine: number | undefined;
    for (let i = 0; i < code.length; i++) {
        if (SETUP_CALL.test(code[i])) {
            return i;
        }
        if (importLine === undefined && ENGINE_IMPORT.test(raw[i]) && code[i].trim()) {
            importLine = i;
        }
    }
    if (importLine !== undefined) {
        return importLine;
    }
    const found = CONTRACT.map(re => code.findIndex(line => re.test(line)));
    return found.every(i => i >= 0) ? found[1] : undefined;
}

/**
 * Splits what the user typed for the script's arguments like a POSIX shell would split words (quotes,
 * backslash escapes), without expanding anything: the job gets a list, never a command line.
 * Throws on an unterminated quote.
 */
export function splitArgs(line: string): string[] {
    const out: string[] = [];
    let word = '';
    let inWord = false;
    let quote: '"' | '\'' | null = null;
    for (let i = 0; i < line.length; i++) {
        const c = line[i];
        if (quote) {
            if (c === quote) {
                quote = null;
            } else if (c === '\\' && quote === '"' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) {
                word += line[++i];
            } else {
                word += c;
            }
            continue;
        }
        if (c === '"' || c === '\'') {
            quote = c;
            inWord = true;
        } else if (c === '\\' && i + 1 < line.length) {
            word += line[++i];
            inWord = true;
        } else if (/\s/.test(c)) {
            if (inWord) {
                out.push(word);
                word = '';
                inWord = false;
            }
        } else {
            word += c;
            inWord = true;
        }
    }
    if (quote) {
        throw new Error(`unterminated ${quote === '"' ? 'double' : 'single'} quote in the script's arguments`);
    }
    if (inWord) {
        out.push(word);
    }
    return out;
}
