// `--confirm K` in the editor and on the dashboard (issue #24): the Tune command's options, the answer a
// finished job's result names (what *Apply best parameters* writes, and the words that say which), and the
// dashboard's Confirmed block built from tune.confirm / tune.confirmed / tune.done events.
import { describe, expect, it } from 'vitest';
import {
    answerOf, CONFIRM_CHOICES, DEFAULT_CONFIRM_SEEDS, describeAnswer, parseTuneArgs, tuneOptions,
} from '../../../extension/src/tune/args';
import {
    answerLine, applyTune, confirmPlot, confirmProgress, confirmRows, emptyTune, type TuneState,
} from '../../../extension/webview/tune';

const base = (kind: string, t: number, extra: Record<string, unknown>) => ({ kind, t, run: 'tune-s1', rank: 0, study: 's1', ...extra });
const samples = (events: Record<string, unknown>[]) => ({ type: 'samples', run: 'tune-s1', rank: 0, t: 1, samples: [], events });
const feed = (state: TuneState, ...events: Record<string, unknown>[]) => applyTune(state, samples(events));
const studyEvent = (t = 0) => base('tune.study', t, {
    direction: 'maximize', metric: 'accuracy', sampler: 'tpe', pruner: 'hyperband', n_trials: 20, parallel: 1, storage: 'sqlite:///x.db',
});
const trial = (number: number, value: number, lr: number) => base('tune.trial', 1 + number, {
    number, state: 'complete', params: { lr }, value, intermediate: [], reason: null, worker: 0, waiting_reason: null, duration_s: 2,
});
const confirm = (t: number, number: number, seed: number, value: number | null, done: number, total = 4, reason: string | null = null) =>
    base('tune.confirm', t, { number, seed, state: value === null ? 'fail' : 'complete', value, reason, done, total });
/** The producer's summary as server/protocol/hub_events.py's TuneConfirmation has it (trial 3 wins on its mean). */
const SUMMARY = {
    k: 2, seeds: [1, 2], chosen: 3,
    reason: 'trial 3: mean 0.79 over 2 seeds, against the search\'s best, trial 7, 0.765',
    candidates: [
        { number: 7, params: { lr: 0.1 }, search_value: 0.81, values: [0.76, 0.77], mean: 0.765, std: 0.00707, ci95: [0.6765, 0.8535] },
        { number: 3, params: { lr: 0.03 }, search_value: 0.8, values: [0.78, 0.8], mean: 0.79, std: 0.01414, ci95: [0.6629, 0.9171] },
    ],
};

/** A study whose search found trial 7 best (0.81) and trial 3 second (0.8). */
function searched(): TuneState {
    const s = emptyTune();
    feed(s, studyEvent(), trial(3, 0.8, 0.03), trial(7, 0.81, 0.1));
    return s;
}

describe('the Tune command\'s confirm options', () => {
    it('offers off, 3 and 5, and reads confirm / confirm_seeds within the protocol\'s ranges', () => {
        expect(CONFIRM_CHOICES).toEqual([0, 3, 5]);
        expect(parseTuneArgs({ path: 'a.py', confirm: 3, confirm_seeds: 4 })).toMatchObject({ confirm: 3, confirmSeeds: 4 });
        expect(parseTuneArgs({ path: 'a.py', confirm: 0, confirmSeeds: 2 })).toMatchObject({ confirm: 0, confirmSeeds: 2 });
        const bad = parseTuneArgs({ path: 'a.py', confirm: -1, confirm_seeds: 1 });
        expect(bad.confirm).toBeUndefined();
        expect(bad.confirmSeeds).toBeUndefined();  // one seed gives no spread: the CLI needs at least 2
        expect(parseTuneArgs({ path: 'a.py', confirm: 2.5 }).confirm).toBeUndefined();
    });

    it('passes confirm and confirm_seeds to the job only when confirming', () => {
        const chosen = { trials: 20, parallel: 1, metric: 'accuracy', direction: 'maximize' as const };
        expect(tuneOptions('a.py', { ...chosen, confirm: 3 })).toMatchObject({ confirm: 3, confirm_seeds: DEFAULT_CONFIRM_SEEDS });
        expect(tuneOptions('a.py', { ...chosen, confirm: 5, confirmSeeds: 4 })).toMatchObject({ confirm: 5, confirm_seeds: 4 });
        const off = tuneOptions('a.py', { ...chosen, confirm: 0, confirmSeeds: 4 });
        expect('confirm' in off || 'confirm_seeds' in off).toBe(false);
    });
});

describe('the answer in a finished tune job\'s result (what Apply best parameters writes)', () => {
    const result = {
        study: 's1', bestValue: 0.81, bestParams: { lr: 0.1 }, nComplete: 20, nPruned: 0, nFail: 0,
        chosenNumber: 12, chosenParams: { lr: 0.03 },
        confirmed: {
            k: 3, seeds: [1, 2, 3], chosen: 12, reason: 'trial 12 has the best mean',
            candidates: [
                { number: 7, params: { lr: 0.1 }, search_value: 0.81, values: [0.77, 0.78, 0.76], mean: 0.77, std: 0.01, ci95: [0.745, 0.795] },
                { number: 12, params: { lr: 0.03 }, search_value: 0.7901, values: [0.7836, null, 0.78361], mean: 0.783623, std: 0.1, ci95: [0.7, 0.8] },
            ],
        },
    };

    it('is the confirmed winner, said with its mean and how many re-trainings finished', () => {
        const a = answerOf(result)!;
        expect(a).toMatchObject({ params: { lr: 0.03 }, number: 12, confirmed: true, mean: 0.783623, seeds: 2, value: 0.7901 });
        expect(describeAnswer(a, 'accuracy')).toBe('the confirmed best, trial 12 (mean 0.7836 over 2 seeds)');
    });

    it('is the search\'s best without a confirmation (chosenParams, else bestParams of an older daemon)', () => {
        const plain = answerOf({ ...result, confirmed: null, chosenNumber: 7, chosenParams: { lr: 0.1 } })!;
        expect(plain).toMatchObject({ params: { lr: 0.1 }, number: 7, confirmed: false, value: 0.81 });
        expect(describeAnswer(plain, 'accuracy')).toBe('the search\'s best, trial 7 (accuracy 0.81)');
        const older = answerOf({ bestValue: 0.81, bestParams: { lr: 0.1 } })!;
        expect(older).toEqual({ params: { lr: 0.1 }, confirmed: false, value: 0.81 });
        expect(describeAnswer(older)).toBe('the search\'s best (0.81)');
        expect(answerOf({ bestParams: {} })).toBeUndefined();
    });

    it('is not called confirmed when no re-training finished (the confirmation chose nothing)', () => {
        const none = answerOf({ ...result, chosenNumber: 7, chosenParams: { lr: 0.1 }, confirmed: { ...result.confirmed, chosen: null, reason: 'no re-training finished' } })!;
        expect(none).toMatchObject({ params: { lr: 0.1 }, confirmed: false, reason: 'no re-training finished' });
        expect(describeAnswer(none, 'accuracy')).toBe('the search\'s best, trial 7 (accuracy 0.81)');
    });
});

describe('the dashboard\'s Confirmed block', () => {
    it('shows the re-trainings as they finish: progress, a column per seed, the search value beside them', () => {
        const s = searched();
        const st = s.studies.get('s1')!;
        expect(confirmProgress(st)).toBeNull();
        feed(s, confirm(20, 7, 2, 0.77, 1));   // seed 2 before seed 1: columns still go by seed
        feed(s, confirm(21, 7, 1, 0.76, 2), confirm(22, 3, 1, null, 3, 4, 'CUDA out of memory'));
        expect(confirmProgress(st)).toBe('re-training 3/4');
        const table = confirmRows(st)!;
        expect(table.head).toEqual(['trial', 'search accuracy', 'seed 1', 'seed 2', 'mean ± 95 % CI']);
        expect(table.rows.map(r => r.cells)).toEqual([['7', '0.81', '0.76', '0.77', '—'], ['3', '0.8', '—', '—', '—']]);
        expect(table.rows.some(r => r.chosen)).toBe(false);   // nothing is chosen before the summary
        expect(table.failures).toEqual(['trial 3 seed 1: CUDA out of memory']);
        expect(answerLine(st)).toBeNull();
        expect(confirmPlot(st)!.y).toEqual([0.76, 0.81]);
    });

    it('shows the summary: mean ± 95 % CI, the chosen trial marked, the reason, the answer above the search\'s best', () => {
        const s = searched();
        feed(s, confirm(20, 7, 1, 0.76, 1), base('tune.confirmed', 30, SUMMARY));
        const st = s.studies.get('s1')!;
        expect(confirmProgress(st)).toBeNull();
        const table = confirmRows(st)!;
        expect(table.rows.map(r => [r.cells, r.chosen])).toEqual([
            [['7', '0.81', '0.76', '0.77', '0.765 ± 0.0885'], false],
            [['3', '0.8', '0.78', '0.8', '0.79 ± 0.1271'], true],
        ]);
        expect(table.rows[1].interval).toBe('[0.6629, 0.9171]');
        expect(table.reason).toBe(SUMMARY.reason);
        expect(answerLine(st)).toBe('Confirmed best: #3 accuracy mean 0.79 ± 0.1271 over 2 seeds (search 0.8)');
        const plot = confirmPlot(st)!;
        expect(plot.columns.map(c => [c.number, c.chosen, c.search, c.values, c.mean])).toEqual([
            [7, false, 0.81, [0.76, 0.77], 0.765], [3, true, 0.8, [0.78, 0.8], 0.79],
        ]);
        expect(plot.y).toEqual([0.6629, 0.9171]);   // the intervals are drawn whole
    });

    it('keeps the summary when a reconnect\'s snapshot repeats the older tune.confirm events', () => {
        const s = searched();
        feed(s, confirm(20, 7, 1, 0.76, 1), base('tune.confirmed', 30, SUMMARY));
        const changed = applyTune(s, { type: 'snapshot', messages: [samples([confirm(20, 7, 1, 0.5, 1)])] });
        expect(changed.size).toBe(0);
        const st = s.studies.get('s1')!;
        expect(st.confirmation!.finished).toBe(true);
        expect(confirmRows(st)!.rows[0].cells[2]).toBe('0.76');
    });

    it('reads the answer and the confirmation from tune.done; a rerun of the study starts without them', () => {
        const s = searched();
        feed(s, base('tune.done', 40, {
            n_complete: 2, n_pruned: 0, n_fail: 0, best_value: 0.81, best_params: { lr: 0.1 }, seconds: 9, trials: [],
            chosen_number: 3, chosen_params: { lr: 0.03 }, confirmed: SUMMARY,
        }));
        const st = s.studies.get('s1')!;
        expect(st.done).toMatchObject({ chosenNumber: 3, chosenParams: { lr: 0.03 } });
        expect(st.confirmation).toMatchObject({ finished: true, chosen: 3, k: 2, seeds: [1, 2] });
        feed(s, studyEvent(50));
        expect(st.confirmation).toBeNull();
        expect(confirmRows(st)).toBeNull();
        expect(confirmPlot(st)).toBeNull();
    });

    it('a study without --confirm has no Confirmed block, and its done event no answer beyond the best', () => {
        const s = searched();
        feed(s, base('tune.done', 40, { n_complete: 2, n_pruned: 0, n_fail: 0, best_value: 0.81, best_params: { lr: 0.1 }, seconds: 9, trials: [] }));
        const st = s.studies.get('s1')!;
        expect(st.confirmation).toBeNull();
        expect(st.done).toMatchObject({ chosenNumber: null, chosenParams: {} });
        expect(answerLine(st)).toBeNull();
    });
});
