// The current run's charts, the pure part (no DOM): what each chart draws, and what it says instead when
// the run has no data for it on this machine (loss scale in a bf16 run, communication with one process),
// so that no chart is ever a blank box. dashboard.ts draws them; vitest drives these directly.
import { fmtBytes, fmtMib, fmtNum, fmtSeconds, type RunState } from './model';

export interface ChartDef {
    id: string;
    title: string;
    series: { key: string; label: string; scale?: string }[];
    fmt: (v: number | null) => string;
    /** The chart draws only when one of these has points (default: any of its series). */
    needs?: string[];
}

export const CHARTS: ChartDef[] = [
    { id: 'step_time', title: 'Step time', series: [{ key: 'step_time_s', label: 'step' }, { key: 'data_wait_s', label: 'data wait' }], fmt: fmtSeconds },
    { id: 'throughput', title: 'Throughput (samples/s)', series: [{ key: 'samples_per_s', label: 'samples/s' }], fmt: v => fmtNum(v) },
    { id: 'loss', title: 'Loss', series: [{ key: 'loss', label: 'loss' }], fmt: v => fmtNum(v) },
    // skipped steps alone are a flat 0 without a loss scaler: the chart needs the scale itself
    { id: 'loss_scale', title: 'Loss scale · skipped steps', series: [{ key: 'loss_scale', label: 'loss scale' }, { key: 'skipped_steps', label: 'skipped', scale: 'n' }], fmt: v => fmtNum(v), needs: ['loss_scale'] },
    { id: 'comm_bytes', title: 'Communication bytes / step', series: [{ key: 'comm_bytes_sent', label: 'sent' }, { key: 'comm_bytes_uncompressed', label: 'uncompressed' }], fmt: fmtBytes },
    { id: 'comm_time', title: 'Communication time', series: [{ key: 'comm_time_s', label: 'in flight' }, { key: 'comm_exposed_s', label: 'exposed' }], fmt: fmtSeconds },
    { id: 'memory', title: 'Memory', series: [{ key: 'mem_allocated_mib', label: 'allocated' }, { key: 'mem_reserved_mib', label: 'reserved' }, { key: 'mem_rss_mib', label: 'RSS' }], fmt: fmtMib },
];

/** What the machine says about GPUs (the Devices panel's facts). */
export interface MachineFacts {
    gpus: number;
    gpuReason: string | null;
}

const points = (run: RunState, key: string): number => run.series.get(key)?.pointCount() ?? 0;

/** Whether `def` has something to draw for `run`. */
export function chartHasData(def: ChartDef, run: RunState): boolean {
    return (def.needs ?? def.series.map(s => s.key)).some(k => points(run, k) > 0);
}

function processes(run: RunState): number {
    return Math.max(run.setup?.worldSize ?? 0, run.ranks.size, 1);
}

/**
 * Why `def` has no data for `run`, in one sentence that says what would give it some: read from the run's
 * samples (precision, ranks) and its setup event (device, world size), and from the machine (no GPU).
 */
export function noDataReason(def: ChartDef, run: RunState, machine: MachineFacts): string {
    if (run.lastStep === null && points(run, 'step_time_s') === 0) {
        return 'Waiting for the run\'s first timed step.';
    }
    const precision = run.precision ?? run.setup?.precision ?? null;
    switch (def.id) {
        case 'loss_scale':
            return precision && precision !== 'fp16'
                ? `No loss scaling: this run trains in ${precision} (only fp16 needs a loss scaler), so no step is skipped.`
                : 'No loss scale reported: the engine reports it for runs in fp16 precision.';
        case 'comm_bytes':
        case 'comm_time': {
            const n = processes(run);
            return n <= 1
                ? 'No gradient communication: this run has one process (start it with --nproc 2 or more to see it).'
                : `No communication figures from these ${n} processes: the engine measures them with its DDP hook (FSDP runs and models it did not wrap report none).`;
        }
        case 'memory':
            return machine.gpus === 0 && machine.gpuReason
                ? `No memory figures yet (no GPU on this machine: ${machine.gpuReason}).`
                : 'No memory figures yet: the engine reports them with each step.';
        case 'loss':
            return 'No loss reported: pass the loss to run.backward(loss) or run.log(loss=...).';
        case 'throughput':
            return 'No throughput yet: the engine needs timed steps of batches whose size it can count.';
        default:
            return 'No data for this chart yet.';
    }
}

/**
 * A short note under a chart's title where what it shows depends on the hardware: memory on the CPU is the
 * process's RSS (CUDA's allocator figures need a GPU). Null when there is nothing to add.
 */
export function chartNote(def: ChartDef, run: RunState, machine: MachineFacts): string | null {
    if (def.id !== 'memory' || points(run, 'mem_allocated_mib') > 0 || points(run, 'mem_rss_mib') === 0) {
        return null;
    }
    const why = machine.gpus === 0 && machine.gpuReason ? `no GPU on this machine: ${machine.gpuReason}`
        : `this run is on ${run.setup?.device ?? 'the CPU'}`;
    return `process RSS (${why})`;
}
