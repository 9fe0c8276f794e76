// "Deepdive: Diagnose Performance" and "Apply and measure": the commands' arguments (palette, CodeLens, code
// action, tests), the `diagnose` / `diagnose-fix` job options they make, where the reports land, reading them
// back, and what Keep / Revert does. No `vscode` import: unit tests load this.
import { createHash } from 'crypto';
import * as path from 'path';
import {
    DiagnoseFixOptions, DiagnoseOptions, DiagnosisFinding, DiagnosisReport, JobOptionRanges, SpeedupResult, StepBreakdown,
} from '../protocol';
import { Commands } from '../common/constants';
import { parseScriptRef, ScriptRef, text, withoutUndefined } from '../common/scriptArgs';
import { PART_ORDER } from './format';

export const DIAGNOSE_JOB_KIND = 'diagnose';
export const DIAGNOSE_FIX_JOB_KIND = 'diagnose-fix';
export const DIAGNOSE_COMMAND = Commands.diagnosePerformance;
export const APPLY_AND_MEASURE_COMMAND = Commands.applyAndMeasureFix;

/** `deepdive.diagnose.steps`: optimizer steps measured. */
export const DEFAULT_STEPS = 10;
/** `deepdive.diagnose.pairs`: alternating runs of each arm (6 pairs reach 96.9 % coverage for the median ratio). */
export const DEFAULT_PAIRS = 6;

const RULE_CODE = /^DD\d{3}$/;

/** The command's arguments: which script (a URI string from the CodeLens, a Uri from a menu, a path), and test knobs. */
export interface DiagnoseArgs extends ScriptRef {
    steps?: number;
    warmup?: number;
}

/** A URI string (the daemon's CodeLens), a vscode.Uri (editor menus), or an object of DiagnoseArgs (tests). */
export function parseDiagnoseArgs(arg: unknown): DiagnoseArgs {
    const { ref, rest } = parseScriptRef(arg);
    const out: DiagnoseArgs = { ...ref };
    if (rest) {
        if (isWhole(rest.steps)) {
            out.steps = rest.steps;
        }
        if (isWhole(rest.warmup) || rest.warmup === 0) {
            out.warmup = rest.warmup;
        }
    }
    return withoutUndefined(out);
}

const isWhole = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x > 0;

/**
 * A whole-number setting checked against its job option's range: the value, `fallback` when unset; throws an
 * Error that names the setting and what it takes.
 */
export function countSetting(name: string, value: unknown, range: readonly [number, number], fallback: number): number {
    if (value === undefined || value === null) {
        return fallback;
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value < range[0] || value > range[1]) {
        throw new Error(`the setting ${name} must be a whole number from ${range[0]} to ${range[1]}, got ${JSON.stringify(value)}: change it in the Settings`);
    }
    return value;
}

/**
 * The script's path relative to the workspace folder (the jobs take workspace-relative paths, forward slashes);
 * throws for a script outside it, saying what to do.
 */
export function workspaceRelative(root: string | undefined, file: string): string {
    if (!root) {
        throw new Error('open the folder that holds the script: a diagnosis runs scripts inside the workspace');
    }
    const rel = path.relative(path.resolve(root), path.resolve(file));
    if (!rel || rel.startsWith('..') || path.isAbsolute(rel)) {
        throw new Error(`${path.basename(file)} is outside the workspace folder ${root}: open its folder to diagnose it`);
    }
    return rel.split(path.sep).join('/');
}

/** The `diagnose` job's options. */
export function diagnoseOptions(relPath: string, a: { args?: string[]; steps: number; warmup?: number }): DiagnoseOptions {
    const range = JobOptionRanges.diagnose;
    const o: DiagnoseOptions = {
        path: relPath,
        args: a.args ?? [],
        steps: countSetting('deepdive.diagnose.steps', a.steps, range.steps, DEFAULT_STEPS),
    };
    if (a.warmup !== undefined) {
        o.warmup = countSetting('warmup', a.warmup, range.warmup, 0);
    }
    return o;
}

/** What the daemon's "Apply and measure DD110 fix…" code action passes: the finding and the quick fix's edit. */
export interface FixRequest {
    /** The script's URI string. */
    uri: string;
    code: string;
    /** 1-based. */
    line: number;
    /** The fix's title. */
    title: string;
    /** The quick fix's LSP WorkspaceEdit (JSON), applied on Keep. */
    edit: Record<string, unknown>;
    /** Tests: no notifications; `decide` answers the Keep / Revert question instead of the user. */
    quiet?: boolean;
    decide?: 'keep' | 'revert';
}

/** Checks the code action's argument; throws an Error that says which field is wrong. */
export function parseFixRequest(arg: unknown): FixRequest {
    const a = Array.isArray(arg) ? (arg as unknown[])[0] : arg;
    if (!a || typeof a !== 'object') {
        throw new Error('Apply and measure needs {uri, code, line, title, edit}: run it from the light bulb of a Deepdive finding');
    }
    const x = a as Record<string, unknown>;
    const uri = text(x.uri);
    const code = text(x.code);
    if (!uri) {
        throw new Error('Apply and measure got no script URI: run it from the light bulb of a Deepdive finding');
    }
    if (!code || !RULE_CODE.test(code)) {
        throw new Error(`Apply and measure got the rule code ${JSON.stringify(x.code)}, expected one like DD110`);
    }
    if (typeof x.line !== 'number' || !Number.isInteger(x.line) || x.line < 1) {
        throw new Error(`Apply and measure got the line ${JSON.stringify(x.line)}, expected a 1-based line number`);
    }
    if (!x.edit || typeof x.edit !== 'object' || Array.isArray(x.edit) || !('changes' in x.edit || 'documentChanges' in x.edit)) {
        throw new Error('Apply and measure got no workspace edit (changes or documentChanges) for the fix');
    }
    const out: FixRequest = { uri, code, line: x.line, title: text(x.title) ?? `fix ${code}`, edit: x.edit };
    if (x.quiet === true) {
        out.quiet = true;
    }
    if (x.decide === 'keep' || x.decide === 'revert') {
        out.decide = x.decide;
    }
    return out;
}

/** The `diagnose-fix` job's options. */
export function fixOptions(relPath: string, req: Pick<FixRequest, 'code' | 'line'>,
    a: { args?: string[]; pairs: number; steps: number; warmup?: number }): DiagnoseFixOptions {
    const range = JobOptionRanges['diagnose-fix'];
    const o: DiagnoseFixOptions = {
        path: relPath,
        args: a.args ?? [],
        code: req.code,
        line: req.line,
        pairs: countSetting('deepdive.diagnose.pairs', a.pairs, range.pairs, DEFAULT_PAIRS),
        steps: countSetting('deepdive.diagnose.steps', a.steps, range.steps, DEFAULT_STEPS),
    };
    if (a.warmup !== undefined) {
        o.warmup = countSetting('warmup', a.warmup, range.warmup, 0);
    }
    return o;
}

/**
 * Where the daemon writes a script's report: `<workspace>/.deepdive/diagnose/<stem>-<8 hex of sha1 of the
 * absolute script path>.json` (deepdive.diagnose.report.report_path); the speed-up of a fix beside it
 * as `<same>.speedup.json`.
 */
export function reportPath(workspace: string, script: string): string {
    const abs = path.resolve(script);
    const digest = createHash('sha1').update(abs, 'utf8').digest('hex').slice(0, 8);
    return path.join(workspace, '.deepdive', 'diagnose', `${path.parse(abs).name}-${digest}.json`);
}

export function speedupPath(workspace: string, script: string): string {
    return reportPath(workspace, script).replace(/\.json$/, '.speedup.json');
}

/**
 * Where to look for a script's report (or, with `speedup`, its measured fix) when the job's result names none:
 * the contract's path of the script as given and with its links resolved, then `<stem>.json` (the name
 * `deepdive diagnose` used before the hash). A report found there is used only when it names the script.
 */
export function reportCandidates(workspace: string, script: string, realScript: string, speedup = false): string[] {
    const of = speedup ? speedupPath : reportPath;
    const stem = path.parse(script).name;
    const plain = path.join(workspace, '.deepdive', 'diagnose', `${stem}${speedup ? '.speedup' : ''}.json`);
    return [...new Set([of(workspace, script), of(workspace, realScript), plain])];
}

/** The report file a finished job names in its result (`report`, else `report_path`), if any. */
export function resultPath(result: Record<string, unknown> | null | undefined, key: 'report' | 'speedup'): string | undefined {
    if (!result || typeof result !== 'object') {
        return undefined;
    }
    return text(result[key]) ?? text(result[`${key}_path`]);
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** A report as read from its JSON file (or a job result): null when its figures are missing. */
export function parseReport(x: unknown): DiagnosisReport | null {
    if (!isObj(x) || !finite(x.step_ms) || !isObj(x.breakdown) || !Array.isArray(x.findings)) {
        return null;
    }
    const b = x.breakdown;
    if (!PART_ORDER.every(p => finite(b[p]))) {
        return null;
    }
    const findings = x.findings.filter((f): f is DiagnosisFinding =>
        isObj(f) && typeof f.code === 'string' && typeof f.file === 'string' && finite(f.line) && typeof f.message === 'string');
    return { ...(x as unknown as DiagnosisReport), breakdown: b as unknown as StepBreakdown, findings };
}

/** A speed-up as read from its JSON file or a job result (itself, or under `speedup`/`result`): null when incomplete. */
export function parseSpeedup(x: unknown): SpeedupResult | null {
    if (isObj(x) && !finite(x.speedup) && (isObj(x.speedup) || isObj(x.result))) {
        return parseSpeedup(isObj(x.speedup) ? x.speedup : x.result);
    }
    if (!isObj(x) || typeof x.code !== 'string') {
        return null;
    }
    for (const k of ['speedup', 'ci_low', 'ci_high', 'confidence', 'pairs', 'baseline_ms', 'fixed_ms']) {
        if (!finite(x[k])) {
            return null;
        }
    }
    return x as unknown as SpeedupResult;
}

/** What the notification after a measured fix does with the user's answer. */
export type FixDecision =
    | { action: 'keep' }
    | { action: 'revert'; why: string }
    | { action: 'stale'; why: string };

/**
 * Keep applies the fix to the buffer (left unsaved), only when the file's text is still what was measured (the
 * edit's ranges are that text's); Revert, or dismissing the notification, leaves the file as it is (it was
 * never changed: the job measured a copy).
 */
export function fixDecision(choice: string | undefined, textMeasured: string, textNow: string): FixDecision {
    if (choice !== 'Keep') {
        return { action: 'revert', why: choice === 'Revert' ? 'reverted' : 'dismissed' };
    }
    if (textNow !== textMeasured) {
        return { action: 'stale', why: 'the file changed since it was measured: apply the quick fix again from the light bulb' };
    }
    return { action: 'keep' };
}
