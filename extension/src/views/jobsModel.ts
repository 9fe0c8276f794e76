// Jobs as the Jobs view shows them: a list kept current by `deepdive/jobs/event`, and how one job
// maps to a tree item. No `vscode` import: unit tests load this.
import type { JobEvent, JobInfo } from '../protocol';

/** What applying an event did: nothing to redraw, redraw, or we missed something and must re-list. */
export type ApplyResult = 'unchanged' | 'changed' | 'resync';

export class JobsModel {
    private readonly jobs = new Map<string, JobInfo>();
    private readonly lastSeq = new Map<string, number>();

    replaceAll(jobs: JobInfo[]): void {
        this.jobs.clear();
        for (const job of jobs) {
            this.jobs.set(job.id, job);
        }
    }

    apply(event: JobEvent): ApplyResult {
        const last = this.lastSeq.get(event.jobId);
        if (last !== undefined && event.seq <= last) {
            return 'unchanged'; // a duplicate or a late event
        }
        this.lastSeq.set(event.jobId, event.seq);
        const gap = last !== undefined && event.seq > last + 1;
        let result: ApplyResult = 'unchanged';
        if (event.job) {
            this.jobs.set(event.job.id, event.job);
            result = 'changed';
        } else if (event.type === 'progress' && event.progress) {
            const job = this.jobs.get(event.jobId);
            if (!job) {
                return 'resync';
            }
            this.jobs.set(job.id, {
                ...job,
                // The daemon sends fraction null for "unknown" (message-only progress).
                progress: event.progress.fraction !== undefined ? event.progress.fraction : job.progress,
                message: event.progress.message ?? job.message,
            });
            result = 'changed';
        } else if (!this.jobs.has(event.jobId)) {
            return 'resync';
        }
        return gap ? 'resync' : result;
    }

    /** A job from a request's answer: never overrides a finished state that an event already brought. */
    upsert(job: JobInfo): void {
        const current = this.jobs.get(job.id);
        if (!current || current.state === 'running') {
            this.jobs.set(job.id, job);
        }
    }

    get(id: string): JobInfo | undefined {
        return this.jobs.get(id);
    }

    /** Newest first. */
    list(): JobInfo[] {
        return [...this.jobs.values()].sort((a, b) => b.createdAt - a.createdAt);
    }
}

export interface JobItemModel {
    label: string;
    description: string;
    tooltip: string;
    /** A codicon id, and a theme color id for it. */
    icon: string;
    color?: string;
    /** `job.<state>`: menus in package.json match on it (cancel only for `job.running`). */
    contextValue: string;
}

const ICONS: Record<JobInfo['state'], [string, string | undefined]> = {
    running: ['sync~spin', undefined],
    succeeded: ['pass', 'testing.iconPassed'],
    failed: ['error', 'testing.iconFailed'],
    cancelled: ['circle-slash', 'disabledForeground'],
    lost: ['question', 'list.warningForeground'],
};

/** The kind of a run that reports to the daemon's hub from a terminal (server/daemon/terminal_runs.py). */
export const TERMINAL_KIND = 'terminal';

/** `now` is in seconds since the epoch, like the job's own times. */
export function jobItem(job: JobInfo, now: number): JobItemModel {
    const [icon, color] = ICONS[job.state];
    const pct = typeof job.progress === 'number' ? `${Math.round(job.progress * 100)}%` : undefined;
    let description: string;
    if (job.state === 'running') {
        description = [pct ?? 'running', job.message].filter(Boolean).join(' — ');
    } else {
        const took = job.startedAt && job.endedAt ? ` in ${formatDuration(job.endedAt - job.startedAt)}` : '';
        description = `${job.state}${took}`;
    }
    const tooltip = [
        `${job.title} (${job.kind})`,
        `id: ${job.id}`,
        `state: ${job.state}${pct ? ` · ${pct}` : ''}`,
        job.message ? `message: ${job.message}` : undefined,
        job.pid ? `pid: ${job.pid}` : undefined,
        job.startedAt ? `started: ${new Date(job.startedAt * 1000).toLocaleString()}` : undefined,
        job.state === 'running' && job.startedAt ? `running for ${formatDuration(now - job.startedAt)}` : undefined,
        job.exitCode !== undefined && job.exitCode !== null ? `exit code: ${job.exitCode}` : undefined,
        job.reason ? `reason: ${job.reason}` : undefined,
        job.kind === TERMINAL_KIND ? 'started in a terminal: its output is there, and Ctrl-C there stops it' : undefined,
    ].filter((l): l is string => l !== undefined);
    // A run from a terminal is listed, not owned: no Cancel or Show Output (the daemon has neither).
    const contextValue = job.kind === TERMINAL_KIND ? `terminal.${job.state}` : `job.${job.state}`;
    return { label: job.title, description, tooltip: tooltip.join('\n'), icon, color, contextValue };
}

export function formatDuration(seconds: number): string {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) {
        return `${s}s`;
    }
    const m = Math.floor(s / 60);
    if (m < 60) {
        return `${m}m ${String(s % 60).padStart(2, '0')}s`;
    }
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

/** The job log as plain text, one line per output line; stderr lines are marked. */
export function renderJobLog(job: JobInfo | undefined, lines: { stream: string; text: string }[], truncated: boolean): string {
    const head = job ? [`# ${job.title} (${job.kind}) — ${job.state}${job.reason ? `: ${job.reason}` : ''}`] : [];
    const body = lines.map((l) => (l.stream === 'stderr' ? `[stderr] ${l.text}` : l.text));
    return [...head, ...(truncated ? ['… (older lines were dropped)'] : []), ...body, ''].join('\n');
}
