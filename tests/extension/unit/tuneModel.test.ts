import { describe, expect, it } from 'vitest';
import {
    forRuns, LOG_RATIO, MAX_INTERMEDIATE, MAX_STUDIES, MAX_TRIALS, applyTune, bestOf, countStates, currentStudy, curves, emptyTune,
    fmtParam, fmtParams, history, importanceBars, importanceNote, mixColor, parallelCoords, parseColor, position, searchLabel,
    studiesByRecency, studyState, trialsOf,
    type TuneState,
} from '../../../extension/webview/tune';

const base = (kind: string, t: number, extra: Record<string, unknown>) => ({ kind, t, run: 'tune-s1', rank: 0, study: 's1', ...extra });
const samples = (events: Record<string, unknown>[], run = 'tune-s1') => ({ type: 'samples', run, rank: 0, t: 1, samples: [], events });
const trial = (number: number, t: number, extra: Record<string, unknown> = {}) => base('tune.trial', t, {
    number, state: 'complete', params: { lr: 0.01 }, value: 1, intermediate: [], reason: null, worker: 0,
    waiting_reason: null, duration_s: 1.5, ...extra,
});
const studyEvent = (extra: Record<string, unknown> = {}) => base('tune.study', 0, {
    direction: 'minimize', metric: 'loss', sampler: 'TPESampler', pruner: 'MedianPruner', n_trials: 20, parallel: 2,
    storage: 'sqlite:///x.db', ...extra,
});

function feed(state: TuneState, ...events: Record<string, unknown>[]): Set<string> {
    return applyTune(state, samples(events));
}

describe('applyTune', () => {
    it('builds a study from tune.study, trials, best, importance and done events', () => {
        const s = emptyTune();
        const changed = feed(s, studyEvent(), trial(0, 1, { value: 3, params: { lr: 0.1, opt: 'adam' } }),
            trial(1, 2, { state: 'running', value: null, intermediate: [[0, 5], [1, 4]] }),
            base('tune.best', 3, { number: 0, value: 3, params: { lr: 0.1, opt: 'adam' } }),
            base('tune.importance', 4, { importances: { lr: 0.8, opt: 0.2, bad: 'x' } }));
        expect([...changed]).toEqual(['s1']);
        const st = s.studies.get('s1')!;
        expect(st).toMatchObject({ direction: 'minimize', metric: 'loss', sampler: 'TPESampler', pruner: 'MedianPruner', nTrials: 20, parallel: 2, storage: 'sqlite:///x.db', run: 'tune-s1' });
        expect(trialsOf(st).map(t => [t.number, t.state, t.value])).toEqual([[0, 'complete', 3], [1, 'running', null]]);
        expect(trialsOf(st)[1].intermediate).toEqual([[0, 5], [1, 4]]);
        expect(trialsOf(st)[0]).toMatchObject({ params: { lr: 0.1, opt: 'adam' }, durationS: 1.5, worker: 0 });
        expect(bestOf(st)).toEqual({ number: 0, value: 3, params: { lr: 0.1, opt: 'adam' } });
        expect(st.importances).toEqual({ lr: 0.8, opt: 0.2 });
        expect(importanceBars(st).map(b => b.name)).toEqual(['lr', 'opt']);
        feed(s, base('tune.done', 9, { n_complete: 1, n_pruned: 0, n_fail: 0, best_value: 3, best_params: { lr: 0.1 }, seconds: 12 }));
        expect(st.done).toEqual({ nComplete: 1, nPruned: 0, nFail: 0, bestValue: 3, bestParams: { lr: 0.1 }, seconds: 12, chosenNumber: null, chosenParams: {}, t: 9 });
        expect(countStates(st)).toEqual({ waiting: 0, running: 1, pruned: 0, complete: 1, fail: 0 });
    });

    it('replaces a trial with its newer event and ignores an older one (a reconnect snapshot)', () => {
        const s = emptyTune();
        feed(s, trial(0, 1, { state: 'running', value: null, intermediate: [[0, 2]] }));
        feed(s, trial(0, 5, { state: 'pruned', value: null, intermediate: [[0, 2], [1, 3]], reason: 'pruned at step 1' }));
        const changed = feed(s, trial(0, 1, { state: 'running', value: null }));
        expect(changed.size).toBe(0);
        const t = s.studies.get('s1')!.trials.get(0)!;
        expect(t).toMatchObject({ state: 'pruned', reason: 'pruned at step 1', t: 5 });
        expect(t.intermediate).toHaveLength(2);
    });

    it('reads the events of a snapshot and ignores other events and messages', () => {
        const s = emptyTune();
        applyTune(s, { type: 'snapshot', messages: [samples([trial(0, 1)]), { type: 'machine', t: 1 }, samples([{ kind: 'oom', t: 1 }], 'r')] });
        applyTune(s, null);
        applyTune(s, { type: 'samples', run: 'x', events: 'nope' });
        expect([...s.studies.keys()]).toEqual(['s1']);
    });

    it('takes the study from the run id when an event has none, and skips bad trials', () => {
        const s = emptyTune();
        const e = trial(0, 1) as Record<string, unknown>;
        delete e.study;
        delete e.run;
        applyTune(s, samples([e, base('tune.trial', 1, { number: 'x' }), { ...trial(2, 1), state: 'weird' }], 'tune-other'));
        expect([...s.studies.keys()].sort()).toEqual(['other', 's1']);
        expect(s.studies.get('s1')!.trials.get(2)!.state).toBe('running');
        const none = emptyTune();
        const bare = { kind: 'tune.trial', number: 1, t: 1 };
        applyTune(none, samples([bare], 'train-1'));
        expect(none.studies.size).toBe(0);
    });

    it('keeps params of any JSON type as a value it can show', () => {
        const s = emptyTune();
        feed(s, trial(0, 1, { params: { a: 1, b: 'x', c: true, d: null, e: [1, 2], f: Infinity } }));
        expect(s.studies.get('s1')!.trials.get(0)!.params).toEqual({ a: 1, b: 'x', c: true, d: null, e: '[1,2]', f: null });
    });
});

describe('memory caps', () => {
    it(`keeps at most ${MAX_TRIALS} trials per study, forgetting the oldest finished ones but not the best or running ones`, () => {
        const s = emptyTune();
        const events = [trial(0, 1, { value: -100 }), trial(1, 1, { state: 'running', value: null })];
        for (let i = 2; i < MAX_TRIALS + 50; i++) {
            events.push(trial(i, 1, { value: i }));
        }
        feed(s, ...events);
        const st = s.studies.get('s1')!;
        expect(st.trials.size).toBe(MAX_TRIALS);
        expect(st.forgotten).toBe(50);
        expect(st.trials.has(0)).toBe(true);   // the best (by value) — bestOf() falls back to complete trials
        expect(st.trials.has(1)).toBe(true);   // running
        expect(st.trials.has(2)).toBe(false);
        expect(st.trials.has(MAX_TRIALS + 49)).toBe(true);
    });

    it('keeps the tune.best trial when capping', () => {
        const s = emptyTune();
        feed(s, base('tune.best', 1, { number: 5, value: 0.1, params: {} }));
        const events = [];
        for (let i = 0; i < MAX_TRIALS + 10; i++) {
            events.push(trial(i, 1, { value: i === 5 ? 0.1 : 1 }));
        }
        feed(s, ...events);
        expect(s.studies.get('s1')!.trials.has(5)).toBe(true);
    });

    it(`keeps the last ${MAX_INTERMEDIATE} intermediate values of a trial`, () => {
        const s = emptyTune();
        const inter = Array.from({ length: MAX_INTERMEDIATE + 5 }, (_, i) => [i, i]);
        feed(s, trial(0, 1, { intermediate: [...inter, ['bad', 1]] }));
        const got = s.studies.get('s1')!.trials.get(0)!.intermediate;
        expect(got).toHaveLength(MAX_INTERMEDIATE);
        expect(got[0]).toEqual([5, 5]);
    });

    it(`keeps at most ${MAX_STUDIES} studies, forgetting the least recent`, () => {
        const s = emptyTune();
        for (let i = 0; i < MAX_STUDIES + 2; i++) {
            applyTune(s, samples([{ ...trial(0, 100 + i), study: `s${i}` }]));
        }
        expect(s.studies.size).toBe(MAX_STUDIES);
        expect(s.studies.has('s0')).toBe(false);
        expect(studiesByRecency(s)[0].name).toBe(`s${MAX_STUDIES + 1}`);
        expect(currentStudy(s, null)!.name).toBe(`s${MAX_STUDIES + 1}`);
        expect(currentStudy(s, 's5')!.name).toBe('s5');
        expect(currentStudy(s, 'gone')!.name).toBe(`s${MAX_STUDIES + 1}`);
        expect(currentStudy(emptyTune(), null)).toBeNull();
    });
});

describe('series', () => {
    it('history: complete trials by number with the best so far (minimize and maximize)', () => {
        const s = emptyTune();
        feed(s, studyEvent(), trial(3, 1, { value: 2 }), trial(0, 1, { value: 5 }), trial(1, 1, { state: 'pruned', value: null }),
            trial(2, 1, { value: 7 }), trial(4, 1, { state: 'fail', value: null }), trial(5, 1, { value: 1 }));
        expect(history(s.studies.get('s1')!)).toEqual({ x: [0, 2, 3, 5], value: [5, 7, 2, 1], best: [5, 5, 2, 1] });
        feed(s, studyEvent({ direction: 'maximize' }));
        expect(history(s.studies.get('s1')!).best).toEqual([5, 7, 7, 7]);
        expect(bestOf(s.studies.get('s1')!)).toMatchObject({ number: 2, value: 7 });
    });

    it('curves: the trials with intermediate values and their extent', () => {
        const s = emptyTune();
        feed(s, trial(0, 1, { intermediate: [[0, 3], [1, 2]] }), trial(1, 1, { state: 'pruned', intermediate: [[0, 4]] }), trial(2, 1));
        const c = curves(s.studies.get('s1')!)!;
        expect(c.curves.map(x => [x.number, x.state])).toEqual([[0, 'complete'], [1, 'pruned']]);
        expect(c.x).toEqual([0, 1]);
        expect(c.y).toEqual([2, 4]);
        expect(curves(s.studies.get('s1')!, 1)!.curves.map(x => x.number)).toEqual([1]);
        const none = emptyTune();
        feed(none, trial(0, 1));
        expect(curves(none.studies.get('s1')!)).toBeNull();
    });
});

describe('parallel coordinates', () => {
    it('one axis per param (by name) and the value; linear, log-looking and categorical params', () => {
        const s = emptyTune();
        feed(s, studyEvent(),
            trial(0, 1, { value: 1, params: { lr: 1e-4, units: 16, opt: 'sgd' } }),
            trial(1, 1, { value: 3, params: { lr: 1e-2, units: 32, opt: 'adam' } }),
            trial(2, 1, { value: 2, params: { lr: 1e-1, units: 64, opt: 'adam', extra: true } }),
            trial(3, 1, { state: 'pruned', value: null, params: { lr: 5 } }));
        const pc = parallelCoords(s.studies.get('s1')!);
        expect(pc.axes.map(a => [a.name, a.kind])).toEqual([['extra', 'categorical'], ['lr', 'log'], ['opt', 'categorical'], ['units', 'linear'], ['loss', 'linear']]);
        expect(pc.axes[2].categories).toEqual(['adam', 'sgd']);
        expect(pc.lines.map(l => l.number)).toEqual([0, 1, 2]);
        const [l0, l1, l2] = pc.lines;
        expect(l0.pos[0]).toBeNull();             // trial 0 has no `extra`
        expect(l2.pos[0]).toBe(0.5);              // one category: the middle
        expect(l0.pos[1]).toBeCloseTo(0);
        expect(l1.pos[1]).toBeCloseTo(2 / 3);     // 1e-2 between 1e-4 and 1e-1 on a log axis
        expect(l2.pos[1]).toBeCloseTo(1);
        expect([l0.pos[2], l1.pos[2]]).toEqual([1, 0]);
        expect(l1.pos[3]).toBeCloseTo(1 / 3);
        expect(l0.pos[4]).toBe(0);
        expect(l1.pos[4]).toBe(1);
        // minimize: the lowest value is the best colour
        expect([l0.color, l1.color, l2.color]).toEqual([1, 0, 0.5]);
    });

    it('positions: a flat axis sits in the middle; a narrow positive range stays linear; unknown values are null', () => {
        expect(position({ name: 'a', kind: 'linear', min: 2, max: 2, categories: [] }, 2)).toBe(0.5);
        expect(position({ name: 'a', kind: 'linear', min: 0, max: 4, categories: [] }, 'x')).toBeNull();
        expect(position({ name: 'a', kind: 'categorical', min: 0, max: 1, categories: ['a', 'b'] }, 'c')).toBeNull();
        expect(position({ name: 'a', kind: 'categorical', min: 0, max: 1, categories: ['false', 'true'] }, true)).toBe(1);
        const s = emptyTune();
        feed(s, trial(0, 1, { value: 1, params: { x: 1 } }), trial(1, 1, { value: 1, params: { x: LOG_RATIO / 2 } }));
        const pc = parallelCoords(s.studies.get('s1')!);
        expect(pc.axes[0].kind).toBe('linear');
        expect(pc.lines.map(l => l.color)).toEqual([1, 1]);   // all values equal: all "best"
    });

    it('maximize colours the highest value best; no trials gives only the value axis', () => {
        const s = emptyTune();
        feed(s, studyEvent({ direction: 'maximize', metric: 'acc' }), trial(0, 1, { value: 0.5 }), trial(1, 1, { value: 0.9 }));
        const pc = parallelCoords(s.studies.get('s1')!);
        expect(pc.lines.map(l => l.color)).toEqual([0, 1]);
        const e = emptyTune();
        feed(e, studyEvent());
        expect(parallelCoords(e.studies.get('s1')!)).toEqual({ axes: [{ name: 'loss', kind: 'linear', min: 0, max: 0, categories: [] }], lines: [] });
    });
});

describe('formatting and colours', () => {
    it('formats params', () => {
        expect(fmtParam(3)).toBe('3');
        expect(fmtParam(0.000123)).toBe('0.000123');
        expect(fmtParam(0.0123456)).toBe('0.01235');
        expect(fmtParam(0.052341873920147)).toBe('0.05234');
        expect(fmtParam(1.2345678e-5)).toBe('1.235e-5');
        expect(fmtParam(null)).toBe('—');
        expect(fmtParam(undefined)).toBe('—');
        expect(fmtParam('adam')).toBe('adam');
        expect(fmtParams({ b: 'x', a: 0.5 })).toBe('a=0.5, b=x');
    });

    it('parses theme colours and blends them', () => {
        expect(parseColor('#fff')).toEqual([255, 255, 255]);
        expect(parseColor(' #3794ff ')).toEqual([55, 148, 255]);
        expect(parseColor('#3794ff80')).toEqual([55, 148, 255]);
        expect(parseColor('rgba(10, 20, 30, 0.5)')).toEqual([10, 20, 30]);
        expect(parseColor('rgb(1 2 3)')).toEqual([1, 2, 3]);
        expect(parseColor('var(--x)')).toBeNull();
        expect(mixColor([0, 0, 0], [100, 200, 50], 0.5)).toBe('rgb(50, 100, 25)');
        expect(mixColor([0, 0, 0], [100, 200, 50], 2)).toBe('rgb(100, 200, 50)');
        expect(mixColor([0, 0, 0], [100, 200, 50], NaN)).toBe('rgb(0, 0, 0)');
    });
});

describe('forRuns (what the Runs panels get)', () => {
    it('drops tune-only sample messages, keeps everything else', () => {
        const tuneOnly = samples([trial(0, 1)]);
        const withSamples = { ...samples([trial(0, 1)]), samples: [{ t: 1, step: 1 }] };
        const train = samples([{ kind: 'oom', t: 1 }], 'train-1');
        expect(forRuns(tuneOnly)).toBeNull();
        expect(forRuns({ ...tuneOnly, dropped: 3 })).toEqual({ type: 'dropped', dropped: 3 });
        expect(forRuns(withSamples)).toBe(withSamples);
        expect(forRuns(train)).toBe(train);
        const machine = { type: 'machine', t: 1 };
        expect(forRuns(machine)).toBe(machine);
        expect(forRuns('x')).toBe('x');
        const snap = { type: 'snapshot', dropped: 2, messages: [tuneOnly, train, machine] };
        expect(forRuns(snap)).toEqual({ type: 'snapshot', dropped: 2, messages: [train, machine] });
        const plain = { type: 'snapshot', messages: [train] };
        expect(forRuns(plain)).toBe(plain);
    });
});

describe('what a study shows (issue #20, finding 6)', () => {
    it('a finished study shows no trial running: tune.done settles states whose last live event was lost', () => {
        const s = emptyTune();
        // trial 1's final event never arrived (dropped on the way); trial 2 runs in another process
        feed(s, studyEvent(), trial(0, 1, { state: 'complete', value: 3 }), trial(1, 2, { state: 'running', value: null, intermediate: [[0, 5]] }),
            trial(2, 2, { state: 'running', value: null }));
        const st = s.studies.get('s1')!;
        expect(studyState(st)).toBe('running');
        feed(s, base('tune.done', 9, { n_complete: 2, n_pruned: 0, n_fail: 0, best_value: 2, best_params: {}, seconds: 5,
            trials: [[0, 'complete', 3], [1, 'complete', 2], [2, 'running', null]] }));
        expect(studyState(st)).toBe('finished');
        expect(trialsOf(st).map(t => [t.number, t.state, t.value])).toEqual([[0, 'complete', 3], [1, 'complete', 2], [2, 'running', null]]);
        expect(trialsOf(st)[1].intermediate).toEqual([[0, 5]]);  // what the view had stays
        expect(countStates(st).running).toBe(1);
        // an older live event that arrives late does not bring "running" back
        feed(s, trial(1, 3, { state: 'running', value: null }));
        expect(trialsOf(st)[1].state).toBe('complete');
    });

    it('a rerun of a finished study shows as running again, from its own tune.study', () => {
        const s = emptyTune();
        feed(s, studyEvent(), base('tune.done', 5, { n_complete: 0, n_pruned: 0, n_fail: 0, seconds: 1, trials: [] }));
        expect(studyState(s.studies.get('s1')!)).toBe('finished');
        feed(s, base('tune.study', 7, { direction: 'minimize', metric: 'loss', sampler: 'tpe', pruner: 'hyperband-quarter', n_trials: 40 }));
        expect(studyState(s.studies.get('s1')!)).toBe('running');
    });

    it('names the sampler and pruner by the producer\'s labels, not by their option names', () => {
        const s = emptyTune();
        feed(s, studyEvent({ sampler: 'tpe', pruner: 'hyperband-quarter', sampler_label: 'TPE (multivariate)',
            pruner_label: 'Hyperband, first rung at a quarter of a trial\'s reports',
            metric_source: 'from the script: keep_best=\'accuracy:max\' in setup() at line 112' }));
        const st = s.studies.get('s1')!;
        expect(searchLabel(st)).toBe('sampler TPE (multivariate) · pruner Hyperband, first rung at a quarter of a trial\'s reports');
        expect(st.metricSource).toBe('from the script: keep_best=\'accuracy:max\' in setup() at line 112');
    });

    it('says the patience and where it came from, or that it is off', () => {
        const s = emptyTune();
        feed(s, studyEvent({ sampler: 'tpe', pruner: 'asha', sampler_label: 'TPE (multivariate)',
            pruner_label: 'successive halving (ASHA, one bracket; the top quarter of each rung goes on)',
            patience: 2, patience_source: 'the default' }));
        expect(searchLabel(s.studies.get('s1')!)).toBe('sampler TPE (multivariate) · pruner successive halving (ASHA, one bracket; '
            + 'the top quarter of each rung goes on) · patience 2 (the default)');
        feed(s, studyEvent({ sampler: 'tpe', pruner: 'asha', patience: null, patience_source: 'off: --patience 0' }));
        expect(searchLabel(s.studies.get('s1')!)).toBe('sampler tpe · pruner asha · patience off: --patience 0');
    });

    it('hides importance until enough trials completed, and says how many so far', () => {
        const s = emptyTune();
        feed(s, studyEvent({ importance_after: 20 }), trial(0, 1), trial(1, 2),
            base('tune.importance', 3, { importances: { lr: 0.9 } }));  // e.g. an older producer's early figures
        const st = s.studies.get('s1')!;
        expect(importanceNote(st)).toBeNull();
        feed(s, base('tune.importance', 4, { importances: {}, note: 'importance appears after 20 completed trials (2 so far): ...' }));
        expect(importanceNote(st)).toBe('Importance appears after 20 completed trials (2 so far): with fewer, fANOVA\'s ranking of the parameters is mostly chance.');
        for (let i = 2; i < 20; i++) {
            feed(s, trial(i, 10 + i));
        }
        expect(importanceNote(st)).toBe('importance appears after 20 completed trials (2 so far): ...');  // the producer's word until it recomputes
        feed(s, base('tune.importance', 40, { importances: { lr: 0.7, wd: 0.3 }, note: null }));
        expect(importanceNote(st)).toBeNull();
        expect(importanceBars(st).map(b => b.name)).toEqual(['lr', 'wd']);
    });
});
