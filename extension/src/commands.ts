// The command handlers. Each one reports its failure in one message instead of throwing.
import { commands, Disposable, env, ProgressLocation, Uri, window } from 'vscode';
import { Commands, DEEP_CHECK_KIND, REPORT_PATH, Schemes } from './common/constants';
import { errorMessage } from './common/interpreter';
import { showJobProgress } from './common/jobProgress';
import { traceError } from './common/logging';
import { DeepdiveServer } from './common/server';
import { registerCommand } from './common/vscodeapi';
import { JobInfo, Requests } from './protocol';
import { DoctorReports } from './report/doctor';
import { ReadOnlyDocuments } from './report/documents';
import { renderReport } from './report/markdown';
import { DashboardViews } from './views/dashboard';
import { EnvironmentView } from './views/environment';
import { JobLogs } from './views/jobLogs';
import { JobsView } from './views/jobs';

export interface CommandDeps {
    server: DeepdiveServer;
    doctor: DoctorReports;
    docs: ReadOnlyDocuments;
    environment: EnvironmentView;
    jobs: JobsView;
    jobLogs: JobLogs;
    dashboard: DashboardViews;
}

/** A job from a tree node (`{job}`) or a plain `{id}` / id string (tests, other callers). */
type JobRef = { job: JobInfo } | { id: string } | string | undefined;

function jobId(ref: JobRef): string | undefined {
    if (typeof ref === 'string' || ref === undefined) {
        return ref;
    }
    return 'job' in ref ? ref.job.id : ref.id;
}

function guarded<A extends unknown[]>(what: string, fn: (...args: A) => Promise<unknown>): (...args: A) => Promise<void> {
    return async (...args: A) => {
        try {
            await fn(...args);
        } catch (err) {
            traceError(`${what} failed:`, err);
            void window.showErrorMessage(`Deepdive: ${what} failed: ${errorMessage(err)}`);
        }
    };
}

export const REPORT_URI = Uri.from({ scheme: Schemes.report, path: REPORT_PATH });

export function registerCommands(d: CommandDeps): Disposable[] {
    let reportShown = false;

    const showReport = async (args?: { refresh?: boolean }) => {
        // Running the command again re-probes the environment.
        const refresh = args?.refresh ?? reportShown;
        const report = await window.withProgress(
            { location: ProgressLocation.Window, title: 'Deepdive: probing the environment' },
            () => d.doctor.fetch(refresh),
        );
        await showRendered(d.docs, REPORT_URI, renderReport(report));
        reportShown = true;
    };

    const runDeepCheck = async () => {
        const job = await d.server.request(Requests.jobsStart, {
            kind: DEEP_CHECK_KIND,
            title: 'Deep environment check',
            progress: false,  // the notification below, with Cancel (the daemon's would sit in the status bar)
        });
        d.jobs.upsert(job);
        showJobProgress(d.server, job, 'deep environment check', (j) => d.jobs.upsert(j));
        const sub = d.server.onJobEvent((e) => {
            if (e.jobId !== job.id || e.type !== 'finished') {
                return;
            }
            sub.dispose();
            const end = e.job ?? job;
            // the figures go where the user looks: the Environment view and an open report
            void d.environment.load(false);
            if (end.state === 'succeeded' && d.docs.isOpen(REPORT_URI)) {
                void d.doctor.fetch(false).then((r) => d.docs.set(REPORT_URI, renderReport(r)), () => undefined);
            }
            const text = `Deepdive: deep environment check ${end.state}${end.reason ? `: ${end.reason}` : ''}.`;
            const show = end.state === 'succeeded' ? window.showInformationMessage : window.showWarningMessage;
            void show(text, 'Show Output').then((c) => (c ? d.jobLogs.show(job.id) : undefined));
        });
    };

    const cancelJob = async (ref: JobRef) => {
        const id = jobId(ref);
        if (!id) {
            throw new Error('no job given');
        }
        d.jobs.upsert(await d.server.request(Requests.jobsCancel, { id }));
    };

    const showJobOutput = async (ref: JobRef) => {
        const id = jobId(ref);
        if (!id) {
            throw new Error('no job given');
        }
        await d.jobLogs.show(id);
    };

    return [
        registerCommand(Commands.restartServer, () => d.server.restart('the Restart Server command', true)),
        registerCommand(Commands.showEnvironmentReport, guarded('Environment report', showReport)),
        registerCommand(Commands.runDeepCheck, guarded('Deep environment check', runDeepCheck)),
        registerCommand(Commands.refreshEnvironment, () => d.environment.load(true)),
        registerCommand(Commands.refreshJobs, () => d.jobs.refresh()),
        registerCommand(Commands.cancelJob, guarded('Cancel job', cancelJob)),
        registerCommand(Commands.showJobOutput, guarded('Show job output', showJobOutput)),
        registerCommand(Commands.openDashboard, guarded('Open dashboard', () => d.dashboard.openPanel())),
        registerCommand(Commands.openDashboardInBrowser, (arg?: { quiet?: boolean }) => openDashboardInBrowser(d.server, arg?.quiet === true)),
    ];
}

/**
 * The daemon's dashboard page in the system browser: the same page and store `deepdive dashboard`
 * opens in this workspace. Forwarded by `asExternalUri` when VS Code runs remotely (code-server).
 * Resolves to the URL it opened (the integration tests read it), or undefined with the reason shown.
 */
async function openDashboardInBrowser(server: DeepdiveServer, quiet: boolean): Promise<{ url?: string; error?: string }> {
    try {
        const hub = await server.request(Requests.hub, {});
        if (!hub.running || !hub.dashboardUrl) {
            throw new Error(`the telemetry hub is not running: ${hub.reason ?? 'see the Deepdive output channel'}`);
        }
        const external = await env.asExternalUri(Uri.parse(hub.dashboardUrl));
        if (!quiet && !(await env.openExternal(external))) {
            throw new Error(`the browser did not open; the dashboard is at ${external.toString(true)}`);
        }
        return { url: external.toString(true) };
    } catch (err) {
        const message = errorMessage(err);
        traceError('Open dashboard in browser failed:', err);
        if (!quiet) {
            void window.showErrorMessage(`Deepdive: Open Dashboard in Browser failed: ${message}`);
        }
        return { error: message };
    }
}

/**
 * Opens a Markdown document rendered (VS Code's Markdown preview), not as its source; the preview's
 * own "Open Source" button shows the text. Falls back to the source where the preview is missing.
 */
async function showRendered(docs: ReadOnlyDocuments, uri: Uri, text: string): Promise<void> {
    docs.set(uri, text);
    try {
        await commands.executeCommand('markdown.showPreview', uri);
    } catch (err) {
        traceError('the Markdown preview is not available; showing the report\'s source:', err);
        await docs.show(uri, text);
    }
}
