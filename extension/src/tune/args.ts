// The Tune command's arguments (from the palette, a CodeLens, the explorer, tests), the daemon job's
// options they make, the answer in a finished job's result (the confirmed best of `--confirm K`, else the
// search's best parameters) and the words that say which, and the applyBest edits as plain ranges.
// No `vscode` import.
import * as path from 'path';
import {
    JobInfo, JobOptionRanges, TextEditData, TuneApplyResult, TuneDirection, TuneOptions, TunePruner, TuneSampler, TuneValue, Vocabularies,
} from '../protocol';
import { parseScriptRef, text, withoutUndefined } from '../common/scriptArgs';
import { formatParams, formatSig } from './rounding';

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
    /** `--confirm K`: re-train the search's top K trials with fresh seeds; the best mean is the answer (0: off). */
    confirm?: number;
    /** `--confirm-seeds R`: fresh training seeds per confirmed trial (2 or more). */
    confirmSeeds?: number;
    /** Arguments for the script itself. */
    args?: string[];
    /** No dashboard, no notifications (tests). */
    quiet?: boolean;
    /** Resolve when the job ends (tests), not when it starts. */
    wait?: boolean;
}

export const DEFAULT_TRIALS = 20;
export const MAX_TRIALS = 100_000;
/** The confirmation's seeds per trial when the command isn't told (the CLI's `--confirm-seeds` default). */
export const DEFAULT_CONFIRM_SEEDS = 3;
/** What the Tune command offers for "Confirm the top K with fresh seeds" (0: off). */
export const CONFIRM_CHOICES: readonly number[] = [0, 3, 5];
const [MIN_CONFIRM, MAX_CONFIRM] = JobOptionRanges.tune.confirm;
const [MIN_CONFIRM_SEEDS, MAX_CONFIRM_SEEDS] = JobOptionRanges.tune.confirm_seeds;

const intIn = (x: unknown, min: number, max: number): number | undefined =>
    typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max ? x : undefined;
const positiveInt = (x: unknown, max: number): number | undefined => intIn(x, 1, max);
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
    out.confirm = intIn(a.confirm, MIN_CONFIRM, MAX_CONFIRM);
    out.confirmSeeds = intIn(a.confirmSeeds ?? a.confirm_seeds, MIN_CONFIRM_SEEDS, MAX_CONFIRM_SEEDS);
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
    if (a.confirm) {
        o.confirm = a.confirm;
        o.confirm_seeds = a.confirmSeeds ?? DEFAULT_CONFIRM_SEEDS;
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

/**
 * The study's answer, the parameters *Apply best parameters* writes: the confirmed winner of `--confirm K`
 * (the best mean over fresh seeds), else the search's best trial.
 */
export interface Answer {
    params: Params;
    /** The search's trial the parameters come from (when the result names it). */
    number?: number;
    /** True when the answer is the confirmation's choice (the best re-trained mean). */
    confirmed: boolean;
    /** The confirmed answer's mean over its re-trainings, and how many finished. */
    mean?: number;
    seeds?: number;
    /** The search's value of the answer (the search's best value when not confirmed). */
    value?: number;
    /** The confirmation's one-sentence reason for its choice (or for not choosing), when it ran. */
    reason?: string;
}

const finite = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);

/**
 * The answer in a tune job's result: `chosenParams` (with `chosenNumber` and the `confirmed` summary, the
 * protocol's TuneConfirmation with snake_case keys) when the result has them, else the best parameters.
 */
export function answerOf(result: Record<string, unknown> | null | undefined): Answer | undefined {
    if (!isObj(result)) {
        return undefined;
    }
    const chosen = result.chosenParams ?? result.chosen_params;
    const best = bestParamsOf(result);
    const number = finite(result.chosenNumber ?? result.chosen_number);
    const conf = isObj(result.confirmed) ? result.confirmed : undefined;
    const reason = typeof conf?.reason === 'string' && conf.reason ? conf.reason : undefined;
    if (!isObj(chosen) || Object.keys(chosen).length === 0) {
        return best ? withoutUndefined({ params: best, confirmed: false, value: bestValueOf(result), reason }) : undefined;
    }
    const candidates = Array.isArray(conf?.candidates) ? conf.candidates.filter(isObj) : [];
    const cand = number !== undefined && conf && finite(conf.chosen) === number ? candidates.find(c => finite(c.number) === number) : undefined;
    const mean = finite(cand?.mean);
    if (cand && mean !== undefined) {
        const seeds = Array.isArray(cand.values) ? cand.values.filter(v => finite(v) !== undefined).length : 0;
        return withoutUndefined({ params: chosen, number, confirmed: true, mean, seeds, value: finite(cand.search_value), reason });
    }
    return withoutUndefined({ params: chosen, number, confirmed: false, value: bestValueOf(result), reason });
}

/**
 * Which parameters these are, for the notification, the CodeLens and the code action:
 * `the confirmed best, trial 12 (mean 0.7836 over 3 seeds)` or `the search's best, trial 7 (accuracy 0.7791)`.
 */
export function describeAnswer(a: Answer, metric?: string): string {
    const trial = a.number !== undefined ? `, trial ${a.number}` : '';
    if (a.confirmed && a.mean !== undefined) {
        const seeds = a.seeds ?? 0;
        return `the confirmed best${trial} (mean ${formatSig(a.mean)} over ${seeds} seed${seeds === 1 ? '' : 's'})`;
    }
    const value = a.value !== undefined ? ` (${metric ? `${metric} ` : ''}${formatSig(a.value)})` : '';
    return `the search's best${trial}${value}`;
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
