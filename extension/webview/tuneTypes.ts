// The shape of the Tune view's state: the studies tune.ts builds from the `tune.*` events, their trials,
// best trial and end. tune.ts fills it; tuneQueries.ts and tuneCoords.ts read it; tuneView.ts draws it.
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
    /** When the study's process ended (a later tune.study is a new run of the study). */
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
    lastT: number;
    /** Trials forgotten to keep memory bounded (the oldest finished ones). */
    forgotten: number;
}

export interface TuneState {
    studies: Map<string, Study>;
}
