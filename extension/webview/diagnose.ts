// The Diagnosis section's pure logic (no DOM): the reports `deepdive diagnose` sends to the hub as
// `diagnose.report` events and the fixes *Apply and measure* timed as `diagnose.speedup` events, both inside
// `samples` messages of a run `diagnose-<script stem>`. Per script (its absolute path) the latest report is
// kept, with the step-time breakdown as parts in a fixed order and their shares of the measured step, the
// findings ordered for reading (promoted ones by their share, then measured hot lines, then hints by line)
// and the hotspots by time; and the latest speed-up of each fix (rule and line), newest first.
// The events are the protocol's (server/protocol/hub_events.py, generated into src/protocol.ts): read by
// their declared keys, each value checked as it is read. diagnoseView.ts draws it.
import type {
    DiagnoseReportEvent, DiagnoseSpeedupEvent, DiagnosisFinding, DiagnosisReport, Hotspot, SpeedupResult, Unchecked,
} from '../src/protocol';
import { PART_LABELS, PART_ORDER, type PartKey } from '../src/diagnose/format';
import { isObj, num, str, text } from './read';
import { eachEvent, eventsOnlyRuns } from './streamEvents';

export { fmtMsShort, fmtShare, fmtTimes, PART_LABELS, PART_ORDER, speedupLine, summaryLine, type PartKey } from '../src/diagnose/format';

export const RUN_PREFIX = 'diagnose-';
/** Scripts kept: beyond that the one heard from least recently is forgotten. */
export const MAX_SCRIPTS = 20;
/** Speed-ups kept per script. */
export const MAX_SPEEDUPS = 30;

export interface Part {
    part: PartKey;
    label: string;
    ms: number;
    /** Of the parts' sum (the measured step), 0..1. */
    share: number;
}

export interface Finding {
    code: string;
    file: string;
    line: number;
    message: string;
    part: PartKey | null;
    share: number | null;
    msPerStep: number | null;
    evidence: string | null;
    promoted: boolean;
    fixable: boolean;
}

export interface Spot {
    file: string;
    line: number;
    msPerStep: number;
    share: number;
    part: PartKey | null;
    what: string;
}

export interface Report {
    script: string;
    args: string[];
    device: string;
    profiler: string;
    warmup: number;
    steps: number;
    stepMs: number;
    /** The fastest and slowest measured step, when given. */
    spread: [number, number] | null;
    parts: Part[];
    /** In reading order (see `orderFindings`). */
    findings: Finding[];
    /** By time per step, largest first. */
    hotspots: Spot[];
    engine: boolean;
    wallS: number | null;
    created: number;
    note: string | null;
}

export interface Speedup {
    script: string;
    code: string;
    line: number;
    title: string;
    pairs: number;
    steps: number;
    baselineMs: number;
    fixedMs: number;
    speedup: number;
    ciLow: number;
    ciHigh: number;
    confidence: number;
    verdict: SpeedupResult['verdict'];
    created: number;
}

export interface Diagnosed {
    /** The script's absolute path: the key. */
    script: string;
    /** Its file name. */
    name: string;
    report: Report | null;
    /** The latest measurement per `CODE@line`. */
    speedups: Map<string, Speedup>;
    /** The newest event's time (the order of the picker). */
    lastT: number;
}

export interface DiagnoseState {
    scripts: Map<string, Diagnosed>;
}

export function emptyDiagnose(): DiagnoseState {
    return { scripts: new Map() };
}

const basename = (p: string): string => p.split(/[\\/]/).pop() || p;
const partOf = (x: unknown): PartKey | null => (typeof x === 'string' && (PART_ORDER as readonly string[]).includes(x) ? x as PartKey : null);

/** The parts of a breakdown object in PART_ORDER, each with its share of their sum; null when a part is missing. */
export function parseParts(breakdown: unknown): Part[] | null {
    if (!isObj(breakdown)) {
        return null;
    }
    const ms = PART_ORDER.map(p => num(breakdown[p]));
    if (ms.some(x => x === null)) {
        return null;
    }
    const clean = ms.map(x => Math.max(0, x!));
    const total = clean.reduce((a, x) => a + x, 0);
    return PART_ORDER.map((part, i) => ({ part, label: PART_LABELS[part], ms: clean[i], share: total > 0 ? clean[i] / total : 0 }));
}

function parseFinding(f: unknown): Finding | null {
    if (!isObj(f)) {
        return null;
    }
    const x = f as Unchecked<DiagnosisFinding>;
    const code = text(x.code);
    const file = text(x.file);
    const line = num(x.line);
    if (!code || !file || line === null) {
        return null;
    }
    const share = num(x.share);
    return {
        code, file, line, message: str(x.message) ?? '', part: partOf(x.part), share, msPerStep: num(x.ms_per_step),
        evidence: text(x.evidence), promoted: x.promoted === true && share !== null, fixable: x.fixable === true,
    };
}

/** Promoted findings by share (largest first), then measured lines no rule explains by share, then hints by file and line. */
export function orderFindings(findings: readonly Finding[]): Finding[] {
    const rank = (f: Finding) => (f.promoted ? 0 : f.share !== null ? 1 : 2);
    return [...findings].sort((a, b) => rank(a) - rank(b) || (b.share ?? 0) - (a.share ?? 0)
        || a.file.localeCompare(b.file) || a.line - b.line || a.code.localeCompare(b.code));
}

function parseSpot(h: unknown): Spot | null {
    if (!isObj(h)) {
        return null;
    }
    const x = h as Unchecked<Hotspot>;
    const file = text(x.file);
    const line = num(x.line);
    const ms = num(x.ms_per_step);
    if (!file || line === null || ms === null) {
        return null;
    }
    return { file, line, msPerStep: ms, share: num(x.share) ?? 0, part: partOf(x.part), what: str(x.what) ?? '' };
}

/** A `diagnose.report` event's report, checked; null without a script, a step time or a complete breakdown. */
export function parseReport(r: unknown): Report | null {
    if (!isObj(r)) {
        return null;
    }
    const x = r as Unchecked<DiagnosisReport>;
    const script = text(x.script);
    const stepMs = num(x.step_ms);
    const parts = parseParts(x.breakdown);
    if (!script || stepMs === null || !parts) {
        return null;
    }
    const spread = Array.isArray(x.step_ms_spread) && x.step_ms_spread.length === 2
        && num(x.step_ms_spread[0]) !== null && num(x.step_ms_spread[1]) !== null
        ? [x.step_ms_spread[0] as number, x.step_ms_spread[1] as number] as [number, number] : null;
    const findings = Array.isArray(x.findings) ? x.findings.map(parseFinding).filter((f): f is Finding => f !== null) : [];
    const hotspots = Array.isArray(x.hotspots) ? x.hotspots.map(parseSpot).filter((h): h is Spot => h !== null) : [];
    return {
        script, args: Array.isArray(x.args) ? x.args.filter((a): a is string => typeof a === 'string') : [],
        device: text(x.device) ?? 'cpu', profiler: str(x.profiler) ?? '', warmup: num(x.warmup) ?? 0, steps: num(x.steps) ?? 0,
        stepMs, spread, parts, findings: orderFindings(findings), hotspots: hotspots.sort((a, b) => b.msPerStep - a.msPerStep),
        engine: x.engine === true, wallS: num(x.wall_s), created: num(x.created) ?? 0, note: text(x.note),
    };
}

/** A `diagnose.speedup` event's result, checked; null when a figure is missing. */
export function parseSpeedup(r: unknown): Speedup | null {
    if (!isObj(r)) {
        return null;
    }
    const x = r as Unchecked<SpeedupResult>;
    const script = text(x.script);
    const code = text(x.code);
    const figures = [x.line, x.pairs, x.baseline_ms, x.fixed_ms, x.speedup, x.ci_low, x.ci_high, x.confidence].map(num);
    if (!script || !code || figures.some(v => v === null)) {
        return null;
    }
    const [line, pairs, baselineMs, fixedMs, speedup, ciLow, ciHigh, confidence] = figures as number[];
    const verdict = x.verdict === 'faster' || x.verdict === 'slower' ? x.verdict : 'no measurable change';
    return {
        script, code, line, title: str(x.title) ?? '', pairs, steps: num(x.steps) ?? 0, baselineMs, fixedMs, speedup, ciLow, ciHigh,
        confidence, verdict, created: num(x.created) ?? 0,
    };
}

function scriptOf(state: DiagnoseState, script: string): Diagnosed {
    let d = state.scripts.get(script);
    if (!d) {
        d = { script, name: basename(script), report: null, speedups: new Map(), lastT: -Infinity };
        state.scripts.set(script, d);
        if (state.scripts.size > MAX_SCRIPTS) {
            const oldest = [...state.scripts.values()].filter(o => o !== d).sort((a, b) => a.lastT - b.lastT)[0];
            if (oldest) {
                state.scripts.delete(oldest.script);
            }
        }
    }
    return d;
}

/**
 * Applies one `diagnose.*` event; returns its script, or null when it was ignored (not one, incomplete, or
 * older than what is kept: a reconnect's snapshot repeats recent history).
 */
export function applyEvent(state: DiagnoseState, event: Record<string, unknown>, msgT = 0): string | null {
    const t = num(event.t) ?? msgT;
    if (event.kind === 'diagnose.report') {
        const report = parseReport((event as Unchecked<DiagnoseReportEvent>).report);
        if (!report) {
            return null;
        }
        const known = state.scripts.get(report.script)?.report;
        if (known && known.created >= report.created) {
            return null;
        }
        const d = scriptOf(state, report.script);
        d.report = report;
        d.lastT = Math.max(d.lastT, t);
        return d.script;
    }
    if (event.kind === 'diagnose.speedup') {
        const s = parseSpeedup((event as Unchecked<DiagnoseSpeedupEvent>).result);
        if (!s) {
            return null;
        }
        const key = `${s.code}@${s.line}`;
        const known = state.scripts.get(s.script)?.speedups.get(key);
        if (known && known.created >= s.created) {
            return null;
        }
        const d = scriptOf(state, s.script);
        d.speedups.delete(key);  // re-inserted: the Map's order is the order heard
        d.speedups.set(key, s);
        if (d.speedups.size > MAX_SPEEDUPS) {
            d.speedups.delete(d.speedups.keys().next().value!);
        }
        d.lastT = Math.max(d.lastT, t);
        return d.script;
    }
    return null;
}

/** Applies one /stream message (the `diagnose.*` events of `samples`, and of a snapshot's messages); returns the scripts changed. */
export function applyDiagnose(state: DiagnoseState, msg: unknown, changed: Set<string> = new Set()): Set<string> {
    eachEvent(msg, 'diagnose.', (e, t) => {
        const script = applyEvent(state, e, t);
        if (script !== null) {
            changed.add(script);
        }
    });
    return changed;
}

/** Scripts, the one heard from most recently first. */
export function scriptsByRecency(state: DiagnoseState): Diagnosed[] {
    return [...state.scripts.values()].sort((a, b) => b.lastT - a.lastT || a.script.localeCompare(b.script));
}

/** The script shown: the chosen one while it is known, else the most recent. */
export function currentScript(state: DiagnoseState, chosen: string | null): Diagnosed | null {
    return (chosen !== null ? state.scripts.get(chosen) : undefined) ?? scriptsByRecency(state)[0] ?? null;
}

/** A script's measured fixes, newest first. */
export function speedupsOf(d: Diagnosed): Speedup[] {
    return [...d.speedups.values()].sort((a, b) => b.created - a.created);
}

/** The speed-up as `1.84×` with its interval `1.61–2.05×` and its word. */
export function describeSpeedup(s: Speedup): { ratio: string; interval: string; verdict: string } {
    const times = (x: number) => `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`;
    return {
        ratio: times(s.speedup),
        interval: `${Number((100 * s.confidence).toFixed(1))} % CI ${times(s.ciLow).slice(0, -1)}–${times(s.ciHigh)}`,
        verdict: s.verdict,
    };
}

/** A path as shown: relative to the script's folder when it is under it, else as given. */
export function shortPath(file: string, script: string): string {
    const dir = script.replace(/[\\/][^\\/]*$/, '');
    return dir && file.startsWith(`${dir}/`) ? file.slice(dir.length + 1) : dir && file.startsWith(`${dir}\\`) ? file.slice(dir.length + 1) : file;
}

/** The message for the Runs panels: `diagnose-` runs are this section's events (see runFilter.ts). */
export const diagnoseForRuns = eventsOnlyRuns(RUN_PREFIX);
