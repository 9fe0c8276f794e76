// The Checkpoints view's logic: runs (checkpoint stores) -> their checkpoints, how each maps to a tree
// item, and when to refresh. No `vscode` import: unit tests load this.
import type { CheckpointList, CheckpointRun, CheckpointStep, CheckpointVerifyResult, JobEvent } from '../protocol';

export const CHECKPOINTS_VIEW = 'deepdive.checkpoints';

export const CheckpointCommands = {
    refresh: 'deepdive.refreshCheckpoints',
    addFolder: 'deepdive.addCheckpointFolder',
    verify: 'deepdive.verifyCheckpoints',
    resume: 'deepdive.resumeCheckpointRun',
    export: 'deepdive.exportCheckpoint',
} as const;

/** workspaceState key: store folders outside the workspace the user added to the view. */
export const EXTRA_FOLDERS_KEY = 'deepdive.checkpoints.folders';

export interface RunNode {
    run: CheckpointRun;
}

export interface StepNode {
    run: CheckpointRun;
    step: CheckpointStep;
}

export interface CheckpointItemModel {
    label: string;
    description: string;
    tooltip: string;
    /** A codicon id, and a theme color id for it. */
    icon: string;
    color?: string;
    /** Menus in package.json match on it: `checkpointRun`, `checkpointRun.error`, `checkpointStep`. */
    contextValue: string;
    collapsible: boolean;
}

export function runsOf(list: CheckpointList): RunNode[] {
    return list.runs.map((run) => ({ run }));
}

/** A run's checkpoints, newest step first (the daemon sends the oldest first). */
export function runChildren(node: RunNode): StepNode[] {
    return [...node.run.checkpoints].sort((a, b) => b.step - a.step).map((step) => ({ run: node.run, step }));
}

/** Sizes in the words `deepdive ckpt ls` uses. */
export function formatBytes(n: number): string {
    if (n >= 1e9) {
        return `${(n / 1e9).toFixed(2)} GB`;
    }
    if (n >= 1e6) {
        return `${(n / 1e6).toFixed(1)} MB`;
    }
    if (n >= 1e3) {
        return `${(n / 1e3).toFixed(1)} kB`;
    }
    return `${n} B`;
}

/** Local time as `YYYY-MM-DD HH:MM` (seconds since the epoch in). */
export function formatTime(t: number): string {
    const d = new Date(t * 1000);
    const p = (n: number) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function commandLine(run: CheckpointRun): string | undefined {
    if (!run.script) {
        return undefined;
    }
    const script = run.script.split(/[\\/]/).pop() ?? run.script;
    return [script, ...run.args].join(' ') + (run.nproc > 1 ? ` (×${run.nproc})` : '');
}

export function runItem(run: CheckpointRun): CheckpointItemModel {
    if (run.error) {
        return {
            label: run.name, description: run.error, tooltip: `${run.path}\n${run.error}`, icon: 'error',
            color: 'list.errorForeground', contextValue: 'checkpointRun.error', collapsible: false,
        };
    }
    const n = run.checkpoints.length;
    const ratio = run.ratio ? ` · ${run.ratio.toFixed(2)}× smaller` : '';
    const damaged = run.damaged.length ? ` · ${run.damaged.length} damaged` : '';
    const description = `${n} checkpoint${n === 1 ? '' : 's'} · ${formatBytes(run.diskBytes)} on disk${ratio}${damaged}`;
    const resume = commandLine(run);
    const tooltip = [
        run.path,
        `${formatBytes(run.diskBytes)} on disk for ${formatBytes(run.rawBytes)} of tensors over ${n} checkpoint${n === 1 ? '' : 's'}`
        + (run.ratio ? ` (${run.ratio.toFixed(2)}× smaller: deduplication and compression)` : ''),
        run.damaged.length ? `Not listed (damaged manifest): ${run.damaged.join(', ')} — Verify says why` : undefined,
        resume ? `Resume runs: ${resume}` : 'Resume asks for the training script (no train job of this workspace saved here)',
    ].filter((l): l is string => l !== undefined);
    return {
        label: run.name, description, tooltip: tooltip.join('\n'), icon: 'database', contextValue: 'checkpointRun',
        collapsible: n > 0,
    };
}

export function stepItem(run: CheckpointRun, step: CheckpointStep): CheckpointItemModel {
    const verdict = step.verified === 'ok' ? ' · verified' : step.verified === 'corrupt' ? ' · corrupt' : '';
    const description = `${formatTime(step.time)} · ${formatBytes(step.storedBytes)} (${formatBytes(step.newBytes)} new)${verdict}`;
    const dedup = step.storedBytes > 0 ? (100 * (step.storedBytes - step.newBytes)) / step.storedBytes : 0;
    const metrics = Object.entries(step.metrics).map(([k, v]) => `${k}=${Number(v.toPrecision(4))}`).join(' ');
    const verified = step.verified === 'ok'
        ? `verified${step.verifiedAt ? ` ${formatTime(step.verifiedAt)}` : ''}: every chunk matched its hash`
        : step.verified === 'corrupt'
            ? `corrupt${step.verifiedAt ? ` (verified ${formatTime(step.verifiedAt)})` : ''}: ${step.problem ?? 'see Verify'}`
            : 'not verified since it was saved (Verify checks every chunk)';
    const tooltip = [
        `${run.name} · ${step.name}${step.latest ? ' (latest: a resume tries it first)' : ''}`,
        `saved ${formatTime(step.time)}`,
        `${formatBytes(step.storedBytes)} on disk, ${formatBytes(step.newBytes)} new: ${dedup.toFixed(1)}% deduplicated`,
        `${formatBytes(step.rawBytes)} of tensors (logical), ${step.tensors} tensors`,
        metrics ? `metrics: ${metrics}` : undefined,
        step.lossy ? `lossy: ${step.lossy}` : undefined,
        verified,
    ].filter((l): l is string => l !== undefined);
    const [icon, color] = step.verified === 'ok' ? ['pass', 'testing.iconPassed']
        : step.verified === 'corrupt' ? ['error', 'testing.iconFailed']
            : [step.latest ? 'star-full' : 'history', undefined];
    return {
        label: `step ${step.step}`, description, tooltip: tooltip.join('\n'), icon, color, contextValue: 'checkpointStep',
        collapsible: false,
    };
}

/** A job ended (a training run may have saved or retention deleted), or a run reported a checkpoint. */
export function refreshesCheckpoints(event: JobEvent): boolean {
    return event.type === 'finished' || (event.type === 'data' && event.data?.['event'] === 'checkpoint');
}

/** One line for the notification after a verify. */
export function verifySummary(result: CheckpointVerifyResult): string {
    const n = result.checkpoints.length;
    if (result.ok) {
        const unchecked = result.unchecked.length ? ` (${result.unchecked.length} manifest(s) predate checksums: chunks checked)` : '';
        return `${n} checkpoint(s) in ${result.store} verify: every chunk decodes and matches its hash${unchecked}`;
    }
    const bad = new Set(result.problems.map((p) => p.checkpoint));
    const first = result.problems[0];
    const where = first.tensor ? `tensor '${first.tensor}'` : 'manifest';
    const chunk = first.chunk ? ` (chunk ${first.chunk.slice(0, 12)})` : '';
    const more = result.problems.length > 1 ? ` (+${result.problems.length - 1} more)` : '';
    return `${bad.size} of ${n} checkpoint(s) damaged: ${first.checkpoint}: ${where}${chunk}: ${first.reason}${more}`;
}

/** The file name Export… suggests: the run's folder and the step (`.pt`: needs no extra package). */
export function exportFileName(run: CheckpointRun, step: CheckpointStep, key: string | undefined): string {
    const base = run.name.split(/[\\/]+/).filter(Boolean).join('-') || 'checkpoint';
    return `${base}-step${step.step}${key ? `-${key}` : ''}.pt`;
}
