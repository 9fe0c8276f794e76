// "Deepdive: Compress Model…": the command's arguments, the `compress` job's options built from the picks
// (the protocol's CompressOptions, checked the way the daemon checks them), and what the finished job's
// result says (report paths, summary). No `vscode` import: unit-tested directly.
import * as path from 'path';
import { CompressOptions, CompressTarget, JobOptionRanges, PruneImportance, QuantizeMode, Vocabularies } from '../protocol';

export const COMPRESS_COMMAND = 'deepdive.compressModel';
export const COMPRESS_JOB_KIND = 'compress';

/** What `torch.save` files usually end with; the dialog and the workspace search look for these. */
export const MODEL_EXTENSIONS = ['pt', 'pth', 'bin'] as const;
export const DEFAULT_PRUNE = 0.5;
export const DEFAULT_QUANTIZE: QuantizeMode = 'int8';
/** Depth reduction keeps this many of the model's repeated blocks at most (the protocol's range of `layers`). */
export const MAX_LAYERS = JobOptionRanges.compress.layers[1];

export type StepId = 'prune' | 'layers' | 'distill' | 'quantize';

export interface StepChoice {
    id: StepId;
    label: string;
    detail: string;
    picked: boolean;
}

/**
 * The multi-select quick pick's items, in the order the pipeline runs them. Depth reduction is not picked
 * by default: it needs the number of blocks to keep (asked for when picked, unless `layers` is given).
 */
export function stepChoices(prune = DEFAULT_PRUNE, quantize: QuantizeMode = DEFAULT_QUANTIZE, layers?: number): StepChoice[] {
    return [
        { id: 'prune', label: `Prune ${fmtPercent(prune)}`, picked: true,
          detail: `Remove ${fmtPercent(prune)} of the channels, neurons and heads of each prunable layer, then fine-tune` },
        { id: 'layers', label: `Reduce depth (keep ${layers ?? 'N'} block${layers === 1 ? '' : 's'})`, picked: false,
          detail: 'Keep N of the model\'s repeated blocks (e.g. encoder layers), distilled from the model before it' },
        { id: 'distill', label: 'Distill', picked: true,
          detail: 'Recover accuracy by distillation from the original model (needs train_loader() in the evaluation script)' },
        { id: 'quantize', label: `Quantize ${quantize}`, picked: true,
          detail: quantize === 'int8' ? 'int8 for the target CPU: dynamic for Linear/LSTM/GRU, static with calibration for CNNs'
              : `${quantize} quantization` },
    ];
}

/** The command's arguments (from the palette: none; the explorer: the model's URI; tests: an object). */
export interface CompressArgs {
    /** The model file: a path (absolute or relative to the workspace). */
    model?: string;
    /** The model file as a URI string. */
    modelUri?: string;
    /** The evaluation script: a path. */
    eval?: string;
    steps?: StepId[];
    target?: CompressTarget;
    prune?: number;
    /** Depth reduction: the number of repeated blocks kept (whole, 1..MAX_LAYERS). */
    layers?: number;
    quantize?: QuantizeMode;
    importance?: PruneImportance;
    /** No notifications, no dashboard (tests). */
    quiet?: boolean;
    /** Resolve when the job ends (tests), not when it starts. */
    wait?: boolean;
}

const text = (x: unknown): string | undefined => (typeof x === 'string' && x.trim() ? x.trim() : undefined);
const oneOf = <T extends string>(x: unknown, all: readonly T[]): T | undefined =>
    typeof x === 'string' && (all as readonly string[]).includes(x) ? (x as T) : undefined;
const STEP_IDS: readonly StepId[] = ['prune', 'layers', 'distill', 'quantize'];

/** A vscode.Uri (anything with a scheme and fsPath), a URI or path string, or an object of CompressArgs. */
export function parseCompressArgs(arg: unknown): CompressArgs {
    if (typeof arg === 'string') {
        return /^[a-z][\w+.-]+:/i.test(arg) && !/^[a-z]:[\\/]/i.test(arg) ? { modelUri: arg } : { model: arg };
    }
    if (!arg || typeof arg !== 'object') {
        return {};
    }
    const a = arg as Record<string, unknown>;
    if (typeof a.scheme === 'string' && 'fsPath' in a) {
        return { modelUri: (a as { toString(): string }).toString() };
    }
    const out: CompressArgs = {
        model: text(a.model),
        modelUri: text(a.modelUri),
        eval: text(a.eval),
        target: oneOf(a.target, Vocabularies.compressTargets),
        quantize: oneOf(a.quantize, Vocabularies.quantizeModes),
        importance: oneOf(a.importance, Vocabularies.pruneImportances),
    };
    if (Array.isArray(a.steps) && a.steps.every(s => oneOf(s, STEP_IDS) !== undefined)) {
        out.steps = [...new Set(a.steps as StepId[])];
    }
    if (typeof a.prune === 'number' && a.prune > 0 && a.prune < 1) {
        out.prune = a.prune;
    }
    if (typeof a.layers === 'number' && checkLayers(a.layers) === undefined) {
        out.layers = a.layers;
    }
    if (a.quiet === true) {
        out.quiet = true;
    }
    if (a.wait === true) {
        out.wait = true;
    }
    for (const k of Object.keys(out) as (keyof CompressArgs)[]) {
        if (out[k] === undefined) {
            delete out[k];
        }
    }
    return out;
}

export function isModelFile(file: string): boolean {
    const ext = path.extname(file).slice(1).toLowerCase();
    return (MODEL_EXTENSIONS as readonly string[]).includes(ext);
}

export function isEvalScript(file: string): boolean {
    return path.extname(file).toLowerCase() === '.py';
}

/** Whether the evaluation script defines `student()` at the top level (distillation without pruning needs it). */
export function definesStudent(evalText: string): boolean {
    return /^def[ \t]+student[ \t]*\(/m.test(evalText);
}

/**
 * Checks the picked steps; the message, or undefined when they are fine. `evalText` (the evaluation
 * script) lets it tell that distillation alone has no student before the job starts.
 */
export function checkSteps(steps: readonly StepId[], evalText?: string): string | undefined {
    if (steps.length === 0) {
        return 'pick at least one step: prune, reduce depth, distill or quantize';
    }
    if (steps.includes('distill') && !steps.includes('prune') && !steps.includes('layers') && evalText !== undefined
        && !definesStudent(evalText)) {
        return 'distill needs a student: pick Prune or Reduce depth too (the smaller model is the student) or define student() in the evaluation script';
    }
    return undefined;
}

/** Checks the number of blocks depth reduction keeps (a number, or the input box's text); the message, or undefined. */
export function checkLayers(value: unknown): string | undefined {
    const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_LAYERS) {
        const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
        return `the number of blocks kept is a whole number from 1 to ${MAX_LAYERS}, got ${shown}`;
    }
    return undefined;
}

export interface CompressPicks {
    model: string;
    eval: string;
    steps: readonly StepId[];
    target: CompressTarget;
    prune?: number;
    /** The blocks kept when `steps` has 'layers' (required then). */
    layers?: number;
    quantize?: QuantizeMode;
    importance?: PruneImportance;
}

/** The `compress` job's options as the command fills them: every step's choice given (null: not picked). */
export type CompressJobOptions = CompressOptions & Required<Pick<CompressOptions, 'prune' | 'layers' | 'distill' | 'quantize' | 'target'>>;

/** The job's options from the picks; throws an Error that says what to change when they cannot run. */
export function compressOptions(p: CompressPicks, evalText?: string): CompressJobOptions {
    if (!isModelFile(p.model)) {
        throw new Error(`the model must be a ${MODEL_EXTENSIONS.map(e => `.${e}`).join(', ')} file (torch.save), got ${path.basename(p.model)}`);
    }
    if (!isEvalScript(p.eval)) {
        throw new Error(`the evaluation script must be a .py file, got ${path.basename(p.eval)}`);
    }
    const problem = checkSteps(p.steps, evalText);
    if (problem) {
        throw new Error(problem);
    }
    const prune = p.prune ?? DEFAULT_PRUNE;
    if (!(prune > 0 && prune < 1)) {
        throw new Error(`the pruning amount is a fraction between 0 and 1, got ${prune}`);
    }
    const targets = Vocabularies.compressTargets;
    if (!(targets as readonly string[]).includes(p.target)) {
        throw new Error(`the target must be ${targets.join(' or ')}, got ${String(p.target)}`);
    }
    const layers = p.steps.includes('layers') ? p.layers : undefined;
    if (p.steps.includes('layers')) {
        const bad = checkLayers(layers);
        if (bad) {
            throw new Error(layers === undefined ? 'reduce depth needs the number of blocks to keep' : bad);
        }
    }
    const quantize = p.quantize ?? DEFAULT_QUANTIZE;
    const modes = Vocabularies.quantizeModes;
    if (!(modes as readonly string[]).includes(quantize)) {
        throw new Error(`quantization must be one of ${modes.join(', ')}, got ${String(quantize)}`);
    }
    const o: CompressJobOptions = {
        model: p.model,
        eval: p.eval,
        prune: p.steps.includes('prune') ? prune : null,
        layers: layers ?? null,
        distill: p.steps.includes('distill'),
        quantize: p.steps.includes('quantize') ? quantize : null,
        target: p.target,
    };
    if (p.importance) {
        o.importance = p.importance;
    }
    return o;
}

/** `prune 50 % → keep 4 blocks → distill → int8 (x86)`. */
export function describeSteps(o: CompressJobOptions): string {
    const bits: string[] = [];
    if (o.prune !== null) {
        bits.push(`prune ${fmtPercent(o.prune)}`);
    }
    if (o.layers !== null) {
        bits.push(`keep ${o.layers} block${o.layers === 1 ? '' : 's'}`);
    }
    if (o.distill) {
        bits.push('distill');
    }
    if (o.quantize !== null) {
        bits.push(o.quantize);
    }
    return `${bits.join(' → ')} (${o.target})`;
}

export function fmtPercent(fraction: number): string {
    return `${Number((100 * fraction).toPrecision(3))} %`;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** The report files of a finished job: the JSON named in its result, the Markdown beside it. */
export function reportPaths(result: Record<string, unknown> | null | undefined): { json?: string; markdown?: string } {
    if (!isObj(result)) {
        return {};
    }
    const json = text(result.report);
    const outputs = isObj(result.outputs) ? result.outputs : undefined;
    let markdown = text(result.markdown) ?? text(outputs?.markdown);
    if (!markdown && json) {
        // deepdive compress writes STEM.compress.json and STEM.compress.md side by side
        markdown = json.endsWith('.json') ? `${json.slice(0, -'.json'.length)}.md` : undefined;
    }
    const out: { json?: string; markdown?: string } = {};
    if (json) {
        out.json = json;
    }
    if (markdown) {
        out.markdown = markdown;
    }
    return out;
}

/** The Markdown report's path as the JSON report itself names it (`outputs.markdown`); undefined when it does not parse. */
export function markdownOfReport(jsonText: string): string | undefined {
    try {
        const r: unknown = JSON.parse(jsonText);
        return isObj(r) && isObj(r.outputs) ? text(r.outputs.markdown) : undefined;
    } catch {
        return undefined;
    }
}

export interface Summary {
    sizeRatio: number | null;
    speedupB1: number | null;
    speedupB32: number | null;
    accuracyDropPoints: number | null;
}

const finite = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** The job result's `summary` (snake_case from the CLI). */
export function summaryOf(result: Record<string, unknown> | null | undefined): Summary | undefined {
    const s = isObj(result) && isObj(result.summary) ? result.summary : undefined;
    if (!s) {
        return undefined;
    }
    return {
        sizeRatio: finite(s.size_ratio), speedupB1: finite(s.speedup_b1), speedupB32: finite(s.speedup_b32),
        accuracyDropPoints: finite(s.accuracy_drop_points),
    };
}

/** `3.9× smaller, 2.1× faster at batch 1, accuracy −0.42 points`. */
export function describeSummary(s: Summary): string {
    const bits: string[] = [];
    if (s.sizeRatio !== null) {
        bits.push(`${s.sizeRatio.toFixed(2)}× smaller`);
    }
    if (s.speedupB1 !== null) {
        const x = s.speedupB1;
        bits.push(x >= 1 || x <= 0 ? `${x.toFixed(2)}× faster at batch 1` : `${(1 / x).toFixed(2)}× slower at batch 1`);
    }
    if (s.accuracyDropPoints !== null) {
        const change = -s.accuracyDropPoints;
        bits.push(`accuracy ${change >= 0 ? '+' : '−'}${Math.abs(change).toFixed(2)} points`);
    }
    return bits.join(', ');
}

/**
 * Orders candidate files for a quick pick: those whose name matches `hint` first, then those in the
 * folder of `near` (the model, for the evaluation script), then by path. At most `limit`.
 */
export function rankCandidates(files: readonly string[], hint: RegExp, near?: string, limit = 50): string[] {
    const dir = near ? path.dirname(near) : undefined;
    const score = (f: string) => (hint.test(path.basename(f)) ? 0 : 2) + (dir !== undefined && path.dirname(f) === dir ? 0 : 1);
    return [...new Set(files)].sort((a, b) => score(a) - score(b) || a.localeCompare(b)).slice(0, limit);
}

/** The target CPU to offer first: the one this machine has (`process.arch`). */
export function defaultTarget(arch: string): CompressTarget {
    return /^arm/.test(arch) ? 'arm' : 'x86';
}

/** Model files that `deepdive compress` wrote (`STEM.compressed.pt`) go last in the model quick pick. */
export const NOT_COMPRESSED = /^(?!.*\.compressed\.pt$)/i;
/** Evaluation scripts first in the script quick pick. */
export const EVAL_HINT = /eval/i;
