// The daemon's state and how it reads to the user (status bar, views). No `vscode` import.
import type { TelemetrySummary, VersionResult } from '../protocol';
import { Commands } from './constants';

export type ServerState = 'starting' | 'ready' | 'restarting' | 'stopped' | 'error';

export interface ServerStatus {
    state: ServerState;
    /** Why the daemon is not running (states other than ready). */
    reason?: string;
    /** The daemon's `deepdive/version` answer (ready only). */
    version?: VersionResult;
    python?: string;
}

export interface StatusPresentation {
    /** Status bar text, with a codicon. */
    text: string;
    tooltip: string;
    /** What a click runs. */
    command: string;
    isError: boolean;
}

/** A summary older than this is not shown: the daemon stopped sending (or the clock moved). */
export const TELEMETRY_STALE_MS = 5_000;

function formatRate(value: number): string {
    if (value >= 10_000) {
        return `${(value / 1000).toFixed(1)}k`;
    }
    return value >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

/**
 * The live part of the status bar: the training run's throughput while one reports, otherwise the
 * GPUs' mean utilisation; nothing when there is neither (no GPU and no run) or the summary is stale.
 */
export function presentTelemetry(
    summary: TelemetrySummary | undefined,
    nowMs: number,
): { text: string; tooltip: string } | undefined {
    if (!summary || nowMs - summary.t * 1000 > TELEMETRY_STALE_MS) {
        return undefined;
    }
    const gpu =
        summary.gpuUtil !== undefined && summary.gpuUtil !== null
            ? `GPU ${summary.gpuUtil.toFixed(0)}%` + ((summary.gpuCount ?? 0) > 1 ? ` (mean of ${summary.gpuCount})` : '')
            : undefined;
    const gpuLine = gpu ?? (summary.gpuReason ? summary.gpuReason : 'no GPU reading');
    const cpuLine =
        summary.hostCpu !== undefined && summary.hostCpu !== null ? `host CPU ${summary.hostCpu.toFixed(0)}%` : undefined;
    const run = summary.runs?.[0];
    if (run) {
        const extra = (summary.runs?.length ?? 0) > 1 ? ` (+${(summary.runs?.length ?? 1) - 1} more)` : '';
        const tooltip = [
            // the label states the figure's window and ranks (server/throughput.py), as the dashboard does
            `Run ${run.runId}${run.jobId ? ` (job ${run.jobId})` : ''}: ${formatRate(run.value)} ${run.label ?? run.unit}` +
                (run.step !== undefined && run.step !== null ? ` at step ${run.step}` : '') +
                extra,
            gpuLine,
            cpuLine,
            'Click for the dashboard.',
        ]
            .filter(Boolean)
            .join('\n');
        return { text: `$(rocket) ${formatRate(run.value)} ${run.unit}`, tooltip };
    }
    if (gpu) {
        return { text: `$(pulse) ${gpu.split(' (')[0]}`, tooltip: [gpu, cpuLine, 'Click for the dashboard.'].filter(Boolean).join('\n') };
    }
    return undefined;
}

export function presentStatus(status: ServerStatus): StatusPresentation {
    const why = status.reason ? `: ${status.reason}` : '';
    switch (status.state) {
        case 'ready': {
            const v = status.version;
            const tooltip = v
                ? `Deepdive ${v.version} — daemon pid ${v.pid}\nPython ${v.python}${status.python ? ` (${status.python})` : ''}\nClick for the environment report.`
                : 'Deepdive is ready. Click for the environment report.';
            return { text: '$(pulse) Deepdive', tooltip, command: Commands.showEnvironmentReport, isError: false };
        }
        case 'starting':
            return { text: '$(sync~spin) Deepdive: starting', tooltip: 'Starting the Deepdive daemon…', command: Commands.showEnvironmentReport, isError: false };
        case 'restarting':
            return { text: '$(sync~spin) Deepdive: restarting', tooltip: `Restarting the Deepdive daemon${why}`, command: Commands.showEnvironmentReport, isError: false };
        case 'stopped':
            return { text: '$(circle-slash) Deepdive: stopped', tooltip: `The Deepdive daemon is stopped${why}. Click to restart.`, command: Commands.restartServer, isError: false };
        case 'error':
            return { text: '$(error) Deepdive: error', tooltip: `The Deepdive daemon is not running${why}. Click to restart.`, command: Commands.restartServer, isError: true };
    }
}

/** The one line the views show instead of their content while the daemon is not ready. */
export function notRunningLabel(status: ServerStatus): string {
    if (status.state === 'starting' || status.state === 'restarting') {
        return `Deepdive server is ${status.state}…`;
    }
    return `Deepdive server is not running — ${status.reason ?? status.state}`;
}
