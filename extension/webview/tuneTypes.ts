// The shape of the Tune view's state: the studies tune.ts builds from the `tune.*` events, their trials,
// best trial, confirmation (`--confirm K`) and end. tune.ts fills it; tuneQueries.ts and tuneCoords.ts read it; tuneView.ts draws it.
import type { TrialState, TuneDirection } from '../src/protocol';

export type ParamValue = number | string | boolean | null;

export interface Trial {
    number: number;
    state: TrialState;
    params: Record<string, ParamValue>;
    value: number | null;
    /** [step, value] pairs, oldest first (the producer keeps the last 200). */
    intermediate: [number, number][];
    reason: string | null;
    worker: number | null;
    waitingReason: string | null;
    durationS: number | null;
    /** Time of the event this trial comes from (a newer event of the same trial replaces it). */
    t: number;
}

export interface Best {
    number: number;
    value: number;
    params: Record<string, ParamValue>;
}

export interface Done {
    nComplete: number;
    nPruned: number;
    nFail: number;
    bestValue: number | null;
    bestParams: Record<string, ParamValue>;
    seconds: number | null;
    /** The study's answer (the confirmed winner with `--confirm`, else the search's best trial), when the producer says. */
    chosenNumber: number | null;
    chosenParams: Record<string, ParamValue>;
    /** When the study's process ended (a later tune.study is a new run of the study). */
    t: number;
}

/** One of the search's top trials re-trained with fresh seeds (the protocol's ConfirmCandidate). */
export interface Candidate {
    number: number;
    params: Record<string, ParamValue>;
    /** Its value in the search (trained with the study's seed); null while only tune.confirm events were heard and the trial isn't known. */
    searchValue: number | null;
    /** One per seed of the confirmation's `seeds`, in that order; null: failed or not finished. */
    values: (number | null)[];
    /** The producer's mean, standard deviation and 95 % interval (null until tune.confirmed, or with too few values). */
    mean: number | null;
    std: number | null;
    ci95: [number, number] | null;
}

/** `--confirm K`: the re-trainings heard so far (tune.confirm), then the producer's summary (tune.confirmed / tune.done). */
export interface Confirmation {
    /** K, when the summary arrived. */
    k: number | null;
    /** The fresh seeds, ascending (from the summary, else those heard so far). */
    seeds: number[];
    /** Best search value first once summarized; before that in the order the re-trainings were heard. */
    candidates: Candidate[];
    /** The trial with the best re-trained mean (null: none yet, or no re-training finished). */
    chosen: number | null;
    reason: string | null;
    /** Re-trainings finished so far and in all (tune.confirm's done/total). */
    done: number;
    total: number | null;
    /** Failed re-trainings heard live, `trial N seed S: reason`. */
    failures: string[];
    /** True once the summary (tune.confirmed or tune.done's `confirmed`) arrived. */
    finished: boolean;
    /** The newest event applied (an older one, repeated by a reconnect snapshot, is ignored). */
    t: number;
}

export interface Study {
    name: string;
    run: string | null;
    direction: TuneDirection;
    metric: string;
    sampler: string | null;
    pruner: string | null;
    /** What the sampler and pruner options run, in words ("TPE (auto: multivariate)"), when the producer says. */
    samplerLabel: string | null;
    prunerLabel: string | null;
    /** Early stopping inside a trial: reports without a new best (null: off or not said) and where it came from. */
    patience: number | null;
    patienceSource: string | null;
    /** Where the metric and direction came from (--metric, the study, or the script). */
    metricSource: string | null;
    /** Complete trials before importance is shown (the producer's threshold). */
    importanceAfter: number | null;
    /** Why the producer's last importance event had no values. */
    importanceNote: string | null;
    nTrials: number | null;
    parallel: number | null;
    storage: string | null;
    trials: Map<number, Trial>;
    best: Best | null;
    importances: Record<string, number> | null;
    done: Done | null;
    /** The confirmation of the top trials (`--confirm K`), null when none ran in this run of the study. */
    confirmation: Confirmation | null;
    lastT: number;
    /** Trials forgotten to keep memory bounded (the oldest finished ones). */
    forgotten: number;
}

export interface TuneState {
    studies: Map<string, Study>;
}
