// The Tune command's arguments (from the palette, a CodeLens, the explorer, tests), the daemon job's
// options they make, the best parameters in a finished job's result, and the applyBest edits as plain
// ranges. No `vscode` import.
import * as path from 'path';
import {
    JobInfo, TextEditData, TuneApplyResult, TuneDirection, TuneOptions, TunePruner, TuneSampler, TuneValue, Vocabularies,
} from '../protocol';
import { parseScriptRef, text, withoutUndefined } from '../common/scriptArgs';
import { formatParams } from './rounding';

export type Direction = TuneDirection;

export interface TuneArgs {
    /** The script: a file path or a URI string. */
    path?: string;
    uri?: string;
    trials?: number;
    parallel?: number;
    metric?: string;
    direction?: Direction;
    /** A trial's value: its last report of the metric, or its best one (`deepdive tune --value`). */
    value?: TuneValue;
    sampler?: TuneSampler;
    pruner?: TunePruner;
    study?: string;
    /** Arguments for the script itself. */
    args?: string[];
    /** No dashboard, no notifications (tests). */
    quiet?: boolean;
    /** Resolve when the job ends (tests), not when it starts. */
    wait?: boolean;
}

export const DEFAULT_TRIALS = 20;
export const MAX_TRIALS = 100_000;

const positiveInt = (x: unknown, max: number): number | undefined =>
    typeof x === 'number' && Number.isInteger(x) && x >= 1 && x <= max ? x : undefined;
const oneOf = <T extends string>(x: unknown, all: readonly T[]): T | undefined =>
    typeof x === 'string' && (all as readonly string[]).includes(x) ? (x as T) : undefined;

/** A URI string, a vscode.Uri (anything with a scheme and toString), or an object of TuneArgs. */
export function parseTuneArgs(arg: unknown): TuneArgs {
    const { ref, rest: a } = parseScriptRef(arg);
    if (!a) {
        return ref;
    }
    const out: TuneArgs = { ...ref };
    out.trials = positiveInt(a.trials, MAX_TRIALS);
    out.parallel = positiveInt(a.parallel, 1024);
    out.metric = text(a.metric);
    out.direction = oneOf(a.direction, Vocabularies.tuneDirections);
    out.value = oneOf(a.value, Vocabularies.tuneValues);
    out.sampler = oneOf(a.sampler, Vocabularies.tuneSamplers);
    out.pruner = oneOf(a.pruner, Vocabularies.tunePruners);
    out.study = text(a.study);
    return withoutUndefined(out);
}

/** Validates the trials input box: an integer from 1 to MAX_TRIALS; the message, or undefined when fine. */
export function checkTrials(value: string): string | undefined {
    const n = Number(value.trim());
    return Number.isInteger(n) && n >= 1 && n <= MAX_TRIALS ? undefined : `a whole number from 1 to ${MAX_TRIALS}`;
}

/** Validates the parallelism input box: 1 to `cpus`. */
export function checkParallel(value: string, cpus: number): string | undefined {
    const n = Number(value.trim());
    return Number.isInteger(n) && n >= 1 && n <= cpus ? undefined : `a whole number from 1 to ${cpus} (the CPU count)`;
}

/** Validates a metric name: what `run.log(name=...)` can report. */
export function checkMetric(value: string): string | undefined {
    return /^[A-Za-z_][\w.-]*$/.test(value.trim()) ? undefined : 'a metric name as the script logs it, e.g. loss or accuracy';
}

/** The `tune` job's options (the protocol's TuneOptions): the chosen values, the optional ones only when given. */
export function tuneOptions(path: string, a: TuneArgs & { trials: number; parallel: number; metric: string; direction: Direction }): TuneOptions {
    const o: TuneOptions = { path, trials: a.trials, parallel: a.parallel, metric: a.metric, direction: a.direction };
    if (a.value) {
        o.value = a.value;
    }
    if (a.sampler) {
        o.sampler = a.sampler;
    }
    if (a.pruner) {
        o.pruner = a.pruner;
    }
    if (a.study) {
        o.study = a.study;
    }
    if (a.args && a.args.length) {
        o.args = a.args;
    }
    return o;
}

export type Params = Record<string, unknown>;

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** The best parameters in a tune job's result (`best_params`, `bestParams` or `best.params`), if any. */
export function bestParamsOf(result: Record<string, unknown> | null | undefined): Params | undefined {
    if (!isObj(result)) {
        return undefined;
    }
    const p = result.best_params ?? result.bestParams ?? (isObj(result.best) ? result.best.params : undefined);
    return isObj(p) && Object.keys(p).length > 0 ? p : undefined;
}

/** The best value in a tune job's result (`best_value`, `bestValue` or `best.value`). */
export function bestValueOf(result: Record<string, unknown> | null | undefined): number | undefined {
    if (!isObj(result)) {
        return undefined;
    }
    const v = result.best_value ?? result.bestValue ?? (isObj(result.best) ? result.best.value : undefined);
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** `hidden=256, lr=0.05234`: params for a message, floats to 4 significant digits (not the sampler's 17). */
export function describeParams(p: Params): string {
    return formatParams(Object.fromEntries(Object.entries(p).map(([k, v]) =>
        [k, typeof v === 'string' || typeof v === 'number' || v === null ? v : JSON.stringify(v)])));
}

export interface PlainEdit {
    start: { line: number; character: number };
    end: { line: number; character: number };
    newText: string;
}

const nonNegInt = (x: unknown): boolean => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/**
 * The daemon's edits as plain ranges, in document order. Throws on a malformed or overlapping edit:
 * a WorkspaceEdit with overlapping ranges would fail as a whole anyway, with a vaguer message.
 */
export function toPlainEdits(edits: readonly TextEditData[]): PlainEdit[] {
    const out = edits.map((e, i) => {
        if (!e || !nonNegInt(e.startLine) || !nonNegInt(e.startCharacter) || !nonNegInt(e.endLine) || !nonNegInt(e.endCharacter)
            || typeof e.newText !== 'string') {
            throw new Error(`edit ${i} is malformed: ${JSON.stringify(e)}`);
        }
        if (e.endLine < e.startLine || (e.endLine === e.startLine && e.endCharacter < e.startCharacter)) {
            throw new Error(`edit ${i} ends before it starts: ${JSON.stringify(e)}`);
        }
        return { start: { line: e.startLine, character: e.startCharacter }, end: { line: e.endLine, character: e.endCharacter }, newText: e.newText };
    });
    const before = (a: { line: number; character: number }, b: { line: number; character: number }) =>
        a.line < b.line || (a.line === b.line && a.character < b.character);
    out.sort((a, b) => (before(a.start, b.start) ? -1 : before(b.start, a.start) ? 1 : 0));
    for (let i = 1; i < out.length; i++) {
        if (before(out[i].start, out[i - 1].end)) {
            throw new Error(`edits ${i - 1} and ${i} overlap`);
        }
    }
    return out;
}

/** What applying the best parameters did, in one line. */
export function describeApply(r: Pick<TuneApplyResult, 'changed' | 'unchanged' | 'missing'>, file: string): string {
    const bits: string[] = [];
    bits.push(r.changed.length ? `set ${r.changed.join(', ')} in ${file}` : `${file} already has the best parameters`);
    if (r.unchanged?.length && r.changed.length) {
        bits.push(`unchanged: ${r.unchanged.join(', ')}`);
    }
    if (r.missing?.length) {
        bits.push(`no suggest() for ${r.missing.join(', ')}`);
    }
    return bits.join('; ');
}

/** The script a tune job runs, from its argv (the first `.py` argument; a relative one from its cwd). */
export function scriptOfJob(job: Pick<JobInfo, 'argv' | 'cwd'>): string | undefined {
    const arg = job.argv.find(a => a.endsWith('.py'));
    return arg ? path.resolve(job.cwd || '/', arg) : undefined;
}
