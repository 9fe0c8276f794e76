import { describe, expect, it } from 'vitest';
import {
    applyDiagnose, currentScript, describeSpeedup, diagnoseForRuns, emptyDiagnose, MAX_SCRIPTS, orderFindings, parseParts,
    scriptsByRecency, shortPath, speedupsOf, type DiagnoseState, type Finding,
} from '../../../extension/webview/diagnose';

const SCRIPT = '/w/digits.py';
const RUN = 'diagnose-digits';

const breakdown = { data_wait: 13, forward: 12, backward: 10, optimizer: 3, host_sync: 2, copies: 0, communication: 0, idle: 2 };
const finding = (code: string, line: number, share: number | null, promoted: boolean, extra: Record<string, unknown> = {}) => ({
    code, file: SCRIPT, line, message: `${code} message`, part: share === null ? null : 'data_wait', share,
    ms_per_step: share === null ? null : share * 42, evidence: share === null ? null : 'DataLoader.__next__ ×1 per step',
    promoted, fixable: true, ...extra,
});
const report = (created: number, script = SCRIPT, extra: Record<string, unknown> = {}) => ({
    script, args: ['--epochs', '1'], device: 'cpu', profiler: 'torch.profiler, CPU activities', warmup: 2, steps: 10,
    step_ms: 42, step_ms_spread: [40, 51], breakdown,
    findings: [
        finding('DD131', 70, null, false),
        finding('DD110', 88, 0.05, true, { part: 'host_sync' }),
        finding('DD101', 30, 0.31, true),
        finding('DD900', 50, 0.12, false, { fixable: false }),
        finding('DD130', 65, null, false),
    ],
    hotspots: [
        { file: SCRIPT, line: 60, ms_per_step: 5, share: 0.12, part: 'forward', what: 'aten::addmm ×3' },
        { file: SCRIPT, line: 88, ms_per_step: 9, share: 0.21, part: 'host_sync', what: 'aten::item ×640' },
    ],
    engine: false, wall_s: 14.2, created, note: null, ...extra,
});
const speedup = (created: number, code = 'DD101', line = 30, ratio = 1.84, script = SCRIPT) => ({
    script, code, line, title: 'num_workers=4', pairs: 6, steps: 10, baseline_ms: 42, fixed_ms: 42 / ratio, speedup: ratio,
    ci_low: 1.61, ci_high: 2.05, confidence: 0.96875, verdict: 'faster', wall_s: 30, created,
});
const samples = (events: Record<string, unknown>[], run = RUN) => ({ type: 'samples', v: 1, run, rank: 0, t: 1, samples: [], events });
const reportEv = (t: number, r: Record<string, unknown>, run = RUN) => ({ kind: 'diagnose.report', t, run, rank: 0, report: r });
const speedupEv = (t: number, r: Record<string, unknown>, run = RUN) => ({ kind: 'diagnose.speedup', t, run, rank: 0, result: r });

function feed(s: DiagnoseState, ...events: Record<string, unknown>[]): Set<string> {
    return applyDiagnose(s, samples(events));
}

describe('applyDiagnose', () => {
    it('keeps a report per script with the breakdown as ordered parts whose shares sum to 1', () => {
        const s = emptyDiagnose();
        expect([...feed(s, reportEv(10, report(100)))]).toEqual([SCRIPT]);
        const d = s.scripts.get(SCRIPT)!;
        expect(d.name).toBe('digits.py');
        const r = d.report!;
        expect(r.stepMs).toBe(42);
        expect(r.spread).toEqual([40, 51]);
        expect(r.parts.map(p => p.part)).toEqual(['data_wait', 'forward', 'backward', 'optimizer', 'host_sync', 'copies', 'communication', 'idle']);
        expect(r.parts[0]).toMatchObject({ label: 'data wait', ms: 13 });
        expect(r.parts[0].share).toBeCloseTo(13 / 42, 6);
        expect(r.parts.reduce((a, p) => a + p.share, 0)).toBeCloseTo(1, 9);
        expect(r.hotspots.map(h => h.line)).toEqual([88, 60]);  // by time per step
    });

    it('orders findings: promoted by share, then measured lines without a rule, then hints by line', () => {
        const s = emptyDiagnose();
        feed(s, reportEv(10, report(100)));
        const f = s.scripts.get(SCRIPT)!.report!.findings;
        expect(f.map(x => x.code)).toEqual(['DD101', 'DD110', 'DD900', 'DD130', 'DD131']);
        expect(f.map(x => x.promoted)).toEqual([true, true, false, false, false]);
        expect(f[0].share).toBe(0.31);
        expect(f[3].share).toBeNull();
    });

    it('does not call a finding promoted without a measured share', () => {
        const s = emptyDiagnose();
        feed(s, reportEv(10, report(100, SCRIPT, { findings: [finding('DD110', 88, null, true)] })));
        expect(s.scripts.get(SCRIPT)!.report!.findings[0].promoted).toBe(false);
    });

    it('replaces a report only with a newer one, so a reconnect snapshot changes nothing', () => {
        const s = emptyDiagnose();
        feed(s, reportEv(10, report(100, SCRIPT, { step_ms: 42 })));
        feed(s, reportEv(20, report(200, SCRIPT, { step_ms: 30 })));
        expect(s.scripts.get(SCRIPT)!.report!.stepMs).toBe(30);
        const snapshot = { type: 'snapshot', messages: [samples([reportEv(10, report(100, SCRIPT, { step_ms: 42 }))])] };
        expect(applyDiagnose(s, snapshot).size).toBe(0);
        expect(s.scripts.get(SCRIPT)!.report!.stepMs).toBe(30);
    });

    it('ignores reports without a script, a step time or a complete breakdown, and other events', () => {
        const s = emptyDiagnose();
        const partial: Record<string, number> = { ...breakdown };
        delete partial.data_wait;
        expect(feed(s, reportEv(1, report(1, SCRIPT, { breakdown: partial })), reportEv(2, report(2, SCRIPT, { step_ms: 'fast' })),
            reportEv(3, { ...report(3), script: 7 }), { kind: 'compress.step', t: 1, step: 'original' }).size).toBe(0);
        expect(s.scripts.size).toBe(0);
    });

    it('keeps the latest speed-up per fix, newest first, even before any report', () => {
        const s = emptyDiagnose();
        feed(s, speedupEv(5, speedup(50, 'DD101', 30, 1.5)));
        feed(s, speedupEv(6, speedup(60, 'DD110', 88, 1.1)));
        feed(s, speedupEv(7, speedup(70, 'DD101', 30, 1.84)));
        const d = s.scripts.get(SCRIPT)!;
        expect(d.report).toBeNull();
        expect(speedupsOf(d).map(x => [x.code, x.speedup])).toEqual([['DD101', 1.84], ['DD110', 1.1]]);
        expect(feed(s, speedupEv(8, speedup(50, 'DD101', 30, 1.5))).size).toBe(0);  // an older one repeated
        expect(describeSpeedup(speedupsOf(d)[0])).toEqual({ ratio: '1.84×', interval: '96.9 % CI 1.61–2.05×', verdict: 'faster' });
    });

    it('shows the most recent script unless one was chosen, and forgets the least recent past the limit', () => {
        const s = emptyDiagnose();
        feed(s, reportEv(1, report(1, '/w/a.py')), reportEv(2, report(2, '/w/b.py')));
        expect(currentScript(s, null)!.script).toBe('/w/b.py');
        expect(currentScript(s, '/w/a.py')!.script).toBe('/w/a.py');
        expect(currentScript(s, '/w/gone.py')!.script).toBe('/w/b.py');
        for (let i = 0; i < MAX_SCRIPTS; i++) {
            feed(s, reportEv(10 + i, report(10 + i, `/w/s${i}.py`)));
        }
        expect(s.scripts.size).toBe(MAX_SCRIPTS);
        expect(s.scripts.has('/w/a.py')).toBe(false);
        expect(scriptsByRecency(s)[0].script).toBe(`/w/s${MAX_SCRIPTS - 1}.py`);
    });
});

describe('the Diagnosis section helpers', () => {
    it('drops report-only diagnose runs from the Runs panels but keeps their dropped count and other runs', () => {
        const msg = samples([reportEv(1, report(1))]);
        expect(diagnoseForRuns(msg)).toBeNull();
        expect(diagnoseForRuns({ ...msg, dropped: 3 })).toEqual({ type: 'dropped', dropped: 3 });
        const train = samples([], 'train-digits');
        expect(diagnoseForRuns(train)).toBe(train);
        const withSamples = { ...msg, samples: [{ step: 1, loss: 0.5 }] };
        expect(diagnoseForRuns(withSamples)).toBe(withSamples);
        const snap = { type: 'snapshot', messages: [msg, train] };
        expect(diagnoseForRuns(snap)).toEqual({ type: 'snapshot', messages: [train] });
    });

    it('returns null parts for a breakdown with a part missing and clamps negative parts to zero', () => {
        expect(parseParts({ forward: 1 })).toBeNull();
        const parts = parseParts({ ...breakdown, idle: -3 })!;
        expect(parts.find(p => p.part === 'idle')!.ms).toBe(0);
        expect(parts.reduce((a, p) => a + p.share, 0)).toBeCloseTo(1, 9);
    });

    it('sorts findings stably by file, line and code within a group', () => {
        const f = (code: string, file: string, line: number): Finding => ({
            code, file, line, message: '', part: null, share: null, msPerStep: null, evidence: null, promoted: false, fixable: false,
        });
        expect(orderFindings([f('DD2', '/b.py', 1), f('DD1', '/a.py', 9), f('DD0', '/a.py', 9), f('DD3', '/a.py', 2)])
            .map(x => `${x.file}:${x.line}:${x.code}`)).toEqual(['/a.py:2:DD3', '/a.py:9:DD0', '/a.py:9:DD1', '/b.py:1:DD2']);
    });

    it('shows paths relative to the script folder', () => {
        expect(shortPath('/w/lib/data.py', '/w/train.py')).toBe('lib/data.py');
        expect(shortPath('/other/x.py', '/w/train.py')).toBe('/other/x.py');
    });
});
