// The shape of the Compression view's state: per model, the latest run's measured rows, what runs now and
// the final report. compress.ts fills it from the `compress.*` events; compressQueries.ts and
// compressFormat.ts read it; compressView.ts draws it.

export interface Latency {
    p50: number | null;
    p95: number | null;
    runs: number | null;
}

export interface StepRow {
    step: string;
    params: number | null;
    sizeMb: number | null;
    b1: Latency | null;
    b32: Latency | null;
    /** What the evaluation script's evaluate() returned (a fraction for accuracy). */
    accuracy: number | null;
    seconds: number | null;
    detail: Record<string, unknown>;
    t: number;
}

/** What the running pipeline does now. */
export interface Live {
    step: string;
    phase: string;
    /** The progress event's numbers (distillation's loss, the pruning amount). */
    numbers: Record<string, number>;
    t: number;
}

export interface Summary {
    sizeRatio: number | null;
    paramsRatio: number | null;
    speedupB1: number | null;
    speedupB32: number | null;
    accuracyDropPoints: number | null;
    /** The thread counts the batch 1 speed-up compares (each model at its fastest), when the report has them. */
    threadsB1?: { original: number; compressed: number } | null;
}

export interface ReportInfo {
    target: string | null;
    threads: number | null;
    eval: string | null;
    summary: Summary;
    outputs: { model: string | null; json: string | null; markdown: string | null };
    t: number;
}

export interface CompressedModel {
    /** The model file's stem: the run id without `compress-`. */
    name: string;
    run: string;
    /** The model file, once the report names it. */
    path: string | null;
    /** The latest run's rows by step. */
    steps: Map<string, StepRow>;
    /** Null before the first progress event and once the report came. */
    live: Live | null;
    report: ReportInfo | null;
    /** When the latest run started (its first event). */
    startT: number;
    lastT: number;
    /** Events seen at `lastT` (a reconnect's snapshot repeats them; a coarse clock may give several one time). */
    seenAtLastT: Set<string>;
}

export interface CompressState {
    models: Map<string, CompressedModel>;
}
