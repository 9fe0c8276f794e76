import { createHash } from 'crypto';
import { readFileSync } from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { fmtShare, partShares, speedupLine, summaryLine } from '../../../extension/src/diagnose/format';
import { JobOptionRanges } from '../../../extension/src/protocol';
import {
    APPLY_AND_MEASURE_COMMAND, countSetting, DEFAULT_PAIRS, DIAGNOSE_COMMAND, DEFAULT_STEPS, diagnoseOptions, fixDecision, fixOptions, parseDiagnoseArgs, parseFixRequest, parseReport,
    parseSpeedup, reportCandidates, reportPath, resultPath, speedupPath, workspaceRelative,
} from '../../../extension/src/diagnose/options';

const breakdown = { data_wait: 13, forward: 12, backward: 10, optimizer: 3, host_sync: 2, copies: 0, communication: 0, idle: 2 };
const finding = (code: string, promoted: boolean) => ({
    code, file: '/w/digits.py', line: 30, message: 'm', part: 'data_wait' as const, share: promoted ? 0.31 : null, ms_per_step: null,
    evidence: null, promoted, fixable: true,
});
const EDIT = { changes: { 'file:///w/digits.py': [{ range: { start: { line: 29, character: 0 }, end: { line: 29, character: 5 } }, newText: 'x' }] } };

describe('the Diagnose command arguments and options', () => {
    it('reads the CodeLens URI string, a path, and an object with steps', () => {
        expect(parseDiagnoseArgs('file:///w/digits.py')).toEqual({ uri: 'file:///w/digits.py' });
        expect(parseDiagnoseArgs('server/examples/digits.py')).toEqual({ path: 'server/examples/digits.py' });
        expect(parseDiagnoseArgs({ path: 'a.py', steps: 3, warmup: 0, quiet: true, wait: true, args: ['--epochs', '1'] }))
            .toEqual({ path: 'a.py', steps: 3, warmup: 0, quiet: true, wait: true, args: ['--epochs', '1'] });
        expect(parseDiagnoseArgs({ path: 'a.py', steps: -1 })).toEqual({ path: 'a.py' });
        expect(parseDiagnoseArgs(undefined)).toEqual({});
    });

    it('makes the job path relative to the workspace with forward slashes and refuses a script outside it', () => {
        expect(workspaceRelative('/w', '/w/server/examples/digits.py')).toBe('server/examples/digits.py');
        expect(() => workspaceRelative('/w', '/elsewhere/x.py')).toThrow(/outside the workspace folder \/w: open its folder/);
        expect(() => workspaceRelative(undefined, '/w/x.py')).toThrow(/open the folder that holds the script/);
    });

    it('builds the diagnose options from the setting and the remembered Train arguments', () => {
        expect(diagnoseOptions('digits.py', { args: ['--epochs', '1'], steps: 10 }))
            .toEqual({ path: 'digits.py', args: ['--epochs', '1'], steps: 10 });
        expect(diagnoseOptions('digits.py', { steps: 4, warmup: 1 })).toEqual({ path: 'digits.py', args: [], steps: 4, warmup: 1 });
        expect(() => diagnoseOptions('digits.py', { steps: 0 })).toThrow('the setting deepdive.diagnose.steps must be a whole number from 1 to 1000, got 0');
        expect(() => diagnoseOptions('digits.py', { steps: 2.5 })).toThrow(/whole number/);
    });

    it('falls back to the defaults for unset settings and names the bad one', () => {
        expect(countSetting('deepdive.diagnose.pairs', undefined, [2, 100], DEFAULT_PAIRS)).toBe(6);
        expect(DEFAULT_STEPS).toBe(10);
        expect(() => countSetting('deepdive.diagnose.pairs', '6', [2, 100], DEFAULT_PAIRS)).toThrow('deepdive.diagnose.pairs must be a whole number from 2 to 100, got "6"');
    });
});

describe('Apply and measure', () => {
    it('accepts the code action argument (alone or as the arguments array) and checks each field', () => {
        const arg = { uri: 'file:///w/digits.py', code: 'DD101', line: 30, title: 'num_workers=4', edit: EDIT };
        expect(parseFixRequest(arg)).toEqual(arg);
        expect(parseFixRequest([arg])).toEqual(arg);
        expect(parseFixRequest({ ...arg, title: undefined, decide: 'keep', quiet: true })).toMatchObject({ title: 'fix DD101', decide: 'keep', quiet: true });
        expect(() => parseFixRequest(undefined)).toThrow(/run it from the light bulb/);
        expect(() => parseFixRequest({ ...arg, code: 'E501' })).toThrow('Apply and measure got the rule code "E501", expected one like DD110');
        expect(() => parseFixRequest({ ...arg, line: 0 })).toThrow(/1-based line number/);
        expect(() => parseFixRequest({ ...arg, edit: { range: 1 } })).toThrow(/no workspace edit/);
    });

    it('builds the diagnose-fix options with the pairs and steps settings', () => {
        expect(fixOptions('digits.py', { code: 'DD101', line: 30 }, { pairs: 6, steps: 10, args: ['--epochs', '1'] }))
            .toEqual({ path: 'digits.py', args: ['--epochs', '1'], code: 'DD101', line: 30, pairs: 6, steps: 10 });
        expect(() => fixOptions('digits.py', { code: 'DD101', line: 30 }, { pairs: 1, steps: 10 }))
            .toThrow('the setting deepdive.diagnose.pairs must be a whole number from 2 to 100, got 1');
    });

    it('keeps the fix only on Keep and only while the file is as measured; Revert and dismissing leave it', () => {
        expect(fixDecision('Keep', 'a', 'a')).toEqual({ action: 'keep' });
        expect(fixDecision('Revert', 'a', 'a')).toEqual({ action: 'revert', why: 'reverted' });
        expect(fixDecision(undefined, 'a', 'a')).toEqual({ action: 'revert', why: 'dismissed' });
        expect(fixDecision('Keep', 'a', 'a2')).toMatchObject({ action: 'stale' });
    });

    it('says the measured speed-up in one line, faster, slower or unchanged', () => {
        const r = { code: 'DD110', speedup: 1.84, ci_low: 1.61, ci_high: 2.05, confidence: 0.96875, pairs: 6, verdict: 'faster' as const };
        expect(speedupLine(r)).toBe('DD110 fix: 1.84× faster (96.9 % CI 1.61–2.05×, 6 pairs)');
        expect(speedupLine({ ...r, speedup: 0.8, ci_low: 0.7, ci_high: 0.9, verdict: 'slower' }))
            .toBe('DD110 fix: 1.25× slower (96.9 % CI 0.70–0.90×, 6 pairs)');
        expect(speedupLine({ ...r, speedup: 1.02, ci_low: 0.97, ci_high: 1.08, verdict: 'no measurable change' }))
            .toBe('DD110 fix: no measurable change (1.02×, 96.9 % CI 0.97–1.08×, 6 pairs)');
    });
});

describe('the reports', () => {
    it('finds the report where deepdive.diagnose.report.report_path puts it', () => {
        const abs = path.resolve('/w/server/examples/digits.py');
        const hex = createHash('sha1').update(abs).digest('hex').slice(0, 8);
        expect(reportPath('/w', abs)).toBe(path.join('/w', '.deepdive', 'diagnose', `digits-${hex}.json`));
        expect(speedupPath('/w', abs)).toBe(path.join('/w', '.deepdive', 'diagnose', `digits-${hex}.speedup.json`));
        expect(reportCandidates('/w', abs, abs)).toEqual([reportPath('/w', abs), path.join('/w', '.deepdive', 'diagnose', 'digits.json')]);
        expect(reportCandidates('/w', abs, '/real/digits.py', true)).toEqual([speedupPath('/w', abs), speedupPath('/w', '/real/digits.py'),
            path.join('/w', '.deepdive', 'diagnose', 'digits.speedup.json')]);
        expect(resultPath({ report: '/w/r.json' }, 'report')).toBe('/w/r.json');
        expect(resultPath({ speedup_path: '/w/s.json' }, 'speedup')).toBe('/w/s.json');
        expect(resultPath(null, 'report')).toBeUndefined();
    });

    it('reads a report only with its figures, and a speed-up from the result or nested under it', () => {
        const r = { script: '/w/digits.py', step_ms: 42, breakdown, findings: [finding('DD101', true), { code: 1 }] };
        expect(parseReport(r)!.findings).toHaveLength(1);
        expect(parseReport({ ...r, breakdown: { forward: 1 } })).toBeNull();
        expect(parseReport('x')).toBeNull();
        const s = { script: '/w/digits.py', code: 'DD101', line: 30, title: 't', pairs: 6, steps: 10, baseline_ms: 42, fixed_ms: 23,
            speedup: 1.84, ci_low: 1.6, ci_high: 2, confidence: 0.97, verdict: 'faster' };
        expect(parseSpeedup(s)).toEqual(s);
        expect(parseSpeedup({ speedup: s })).toEqual(s);
        expect(parseSpeedup({ ...s, ci_low: null })).toBeNull();
    });

    it('summarises a report: step time, the largest part that is not the model\'s own work, promoted findings', () => {
        const findings = [finding('DD101', true), finding('DD110', true), finding('DD131', false)];
        expect(summaryLine('digits.py', { step_ms: 42, breakdown, findings }))
            .toBe('digits.py: 42 ms/step; data wait 31 %; 2 findings promoted, 1 hint');
        const quiet = { ...breakdown, data_wait: 0, optimizer: 0, host_sync: 0, idle: 0.1 };
        expect(summaryLine('a.py', { step_ms: 4.25, breakdown: quiet, findings: [] })).toBe('a.py: 4.25 ms/step; 0 findings promoted');
    });

    it('formats shares and part splits', () => {
        expect(fmtShare(0.31)).toBe('31 %');
        expect(fmtShare(0.042)).toBe('4.2 %');
        expect(fmtShare(0.0000001)).toBe('<0.1 %');
        expect(fmtShare(null)).toBe('—');
        expect(fmtShare(0)).toBe('0 %');
        expect(partShares(breakdown).find(p => p.part === 'host_sync')!.share).toBeCloseTo(2 / 42, 9);
    });
});

describe('the manifest', () => {
    // package.json cannot import: its settings and commands are checked against the code instead
    const manifest = JSON.parse(readFileSync(path.join(__dirname, '../../../package.json'), 'utf8')) as {
        contributes: { commands: { command: string }[]; configuration: { properties: Record<string, Record<string, unknown>> };
            menus: Record<string, { command: string; when?: string }[]> };
    };
    const props = manifest.contributes.configuration.properties;

    it('declares the settings with the defaults and the ranges the job options take', () => {
        expect(props['deepdive.diagnose.steps']).toMatchObject({ type: 'integer', default: DEFAULT_STEPS,
            minimum: JobOptionRanges.diagnose.steps[0], maximum: JobOptionRanges.diagnose.steps[1] });
        expect(props['deepdive.diagnose.pairs']).toMatchObject({ type: 'integer', default: DEFAULT_PAIRS,
            minimum: JobOptionRanges['diagnose-fix'].pairs[0], maximum: JobOptionRanges['diagnose-fix'].pairs[1] });
        expect(props['deepdive.diagnostics.enabled']).toMatchObject({ type: 'boolean', default: true });
        expect(props['deepdive.diagnostics.disabledRules']).toMatchObject({ type: 'array', default: [] });
    });

    it('contributes both commands; Apply and measure only from the light bulb, Diagnose in the Python editor menus', () => {
        const ids = manifest.contributes.commands.map(c => c.command);
        expect(ids).toContain(DIAGNOSE_COMMAND);
        expect(ids).toContain(APPLY_AND_MEASURE_COMMAND);
        expect(manifest.contributes.menus.commandPalette).toContainEqual({ command: APPLY_AND_MEASURE_COMMAND, when: 'false' });
        for (const menu of ['editor/title', 'editor/context']) {
            const entry = manifest.contributes.menus[menu].find(m => m.command === DIAGNOSE_COMMAND);
            expect(entry?.when).toMatch(/editorLangId == python/);
        }
    });
});
