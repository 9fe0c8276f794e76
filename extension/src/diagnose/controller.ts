// Performance diagnosis from the editor. "Deepdive: Diagnose Performance" (palette, editor title and context
// menus, the daemon's CodeLens above the step loop) runs the script as a `diagnose` job: a few steps under
// torch.profiler, then a report with the step-time breakdown and the findings at their lines (the daemon
// promotes the diagnostics it backs with a measured share). "Apply and measure" (the daemon's code action on a
// fixable finding) runs a `diagnose-fix` job that times the script and a fixed copy in alternating pairs; the
// file itself is not touched until the user answers Keep. Both follow their job with one progress notification
// with Cancel (common/jobProgress) and open the dashboard's Diagnosis section at the end.
// Refused in an untrusted workspace: both jobs run the script.
import { promises as fs } from 'fs';
import * as path from 'path';
import { Disposable, Memento, TextDocument, Uri, window, workspace } from 'vscode';
import { CONFIG_SECTION, Commands } from '../common/constants';
import { guardCommand } from '../common/guard';
import { showJobProgress } from '../common/jobProgress';
import { traceError, traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { executeCommand, getConfiguration, getWorkspaceFolders, isTrusted, registerCommand } from '../common/vscodeapi';
import { JobEvent, JobInfo, JobStartOf, Requests, SpeedupResult } from '../protocol';
import { MEMORY_KEY as TRAIN_MEMORY_KEY } from '../train/controller';
import type { TrainArgs } from '../train/args';
import { DashboardViews } from '../views/dashboard';
import { JobsView } from '../views/jobs';
import { speedupLine, summaryLine } from './format';
import {
    APPLY_AND_MEASURE_COMMAND, DEFAULT_PAIRS, DEFAULT_STEPS, DIAGNOSE_COMMAND, DIAGNOSE_FIX_JOB_KIND, DIAGNOSE_JOB_KIND,
    diagnoseOptions, DiagnoseArgs, fixDecision, FixDecision, fixOptions, FixRequest, parseDiagnoseArgs, parseFixRequest,
    parseReport, parseSpeedup, reportCandidates, resultPath, workspaceRelative,
} from './options';

const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);
/** Finished jobs remembered for a start request whose answer comes after the job's `finished` event. */
const EARLY_LIMIT = 20;

/** What `deepdive.diagnosePerformance` resolves to (the integration tests read it). */
export interface DiagnoseOutcome {
    state: 'started' | 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    jobId?: string;
    job?: JobInfo;
    /** The report file of a succeeded job, and its summary line. */
    report?: string;
    summary?: string;
    error?: string;
}

/** What `deepdive.applyAndMeasureFix` resolves to. */
export interface FixOutcome {
    state: 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    jobId?: string;
    speedup?: SpeedupResult;
    line?: string;
    decision?: FixDecision['action'];
    /** Keep: whether the editor took the edit. */
    applied?: boolean;
    error?: string;
}

export class DiagnoseController implements Disposable {
    private readonly waiters = new Map<string, (job: JobInfo | undefined) => void>();
    private readonly endedEarly = new Map<string, JobInfo>();

    constructor(
        private readonly server: DeepdiveServer,
        private readonly jobs: JobsView,
        private readonly memory: Memento,
        private readonly dashboard: DashboardViews,
    ) {}

    register(): Disposable[] {
        return [
            this,
            registerCommand(DIAGNOSE_COMMAND, (arg?: unknown) =>
                guardCommand('Diagnose performance', () => this.diagnose(parseDiagnoseArgs(arg)))),
            registerCommand(APPLY_AND_MEASURE_COMMAND, (arg?: unknown) =>
                guardCommand('Apply and measure', () => this.applyAndMeasure(parseFixRequest(arg)))),
            this.server.onJobEvent(e => this.onJobEvent(e)),
            this.server.onDidChangeStatus(s => {
                if (s.state !== 'ready') {
                    for (const [id, end] of [...this.waiters]) {
                        this.waiters.delete(id);
                        end(undefined);  // the daemon's jobs end with it
                    }
                }
            }),
        ];
    }

    dispose(): void {
        for (const end of this.waiters.values()) {
            end(undefined);
        }
        this.waiters.clear();
    }

    // ---- Diagnose Performance -------------------------------------------------------------------

    private async diagnose(a: DiagnoseArgs): Promise<DiagnoseOutcome> {
        const refused = this.refusedUntrusted('diagnosing performance runs the script', a.quiet);
        if (refused) {
            return refused;
        }
        const uri = await this.scriptUri(a);
        if (!uri) {
            return { state: 'dismissed' };
        }
        const doc = await workspace.openTextDocument(uri);
        if (!(await saveIfDirty(doc, 'Save and Diagnose', a.quiet))) {
            return { state: 'dismissed' };
        }
        const root = getWorkspaceFolders()[0]?.uri.fsPath;
        const rel = workspaceRelative(root, uri.fsPath);
        const config = getConfiguration(CONFIG_SECTION, uri);
        const options = diagnoseOptions(rel, {
            args: a.args ?? this.trainArgs(uri.fsPath),
            steps: a.steps ?? config.get<number>('diagnose.steps', DEFAULT_STEPS),
            warmup: a.warmup,
        });
        const file = path.basename(uri.fsPath);
        const params: JobStartOf<typeof DIAGNOSE_JOB_KIND> = {
            kind: DIAGNOSE_JOB_KIND, options, title: `Diagnose ${file} (${options.steps} steps)`, progress: false,
        };
        const { job, ended } = await this.start(params);
        traceInfo(`diagnose job ${job.id} started: ${JSON.stringify(options)}`);
        if (!a.quiet) {
            showJobProgress(this.server, job, `diagnosing ${file}`, j => this.jobs.upsert(j));
        }
        const finished = ended.then(j => this.diagnosed(j, job, uri.fsPath, root, a.quiet === true));
        if (!a.wait) {
            finished.catch(err => traceError(`diagnose job ${job.id}: reporting its end failed:`, err));
            return { state: 'started', jobId: job.id, job };
        }
        return finished;
    }

    private async diagnosed(job: JobInfo | undefined, started: JobInfo, script: string, root: string, quiet: boolean): Promise<DiagnoseOutcome> {
        const file = path.basename(script);
        if (!job) {
            return this.lost(started, `diagnosing ${file}`, quiet);
        }
        const outcome: DiagnoseOutcome = { state: job.state as DiagnoseOutcome['state'], jobId: job.id, job };
        if (job.state !== 'succeeded') {
            outcome.error = job.reason ?? undefined;
            if (!quiet) {
                this.showEnd(job, `diagnosing ${file}`);
            }
            return outcome;
        }
        const realScript = await real(script);
        const reportFile = resultPath(job.result, 'report') ?? await existing(reportCandidates(root, script, realScript));
        const read = parseReport(await readJson(reportFile));
        const report = read && (read.script === script || read.script === realScript) ? read : null;
        if (report) {
            outcome.report = reportFile;
            outcome.summary = summaryLine(file, report);
        } else {
            outcome.error = `the job succeeded but ${reportFile} is not a report of ${file}`;
        }
        if (quiet) {
            return outcome;
        }
        void this.dashboard.reveal('diagnose').catch(err => traceError('opening the Diagnosis section failed:', err));
        if (!report) {
            void window.showWarningMessage(`Deepdive: ${outcome.error}.`);
            return outcome;
        }
        const open = 'Open Report';
        void window.showInformationMessage(`Deepdive: ${outcome.summary}.`, open).then(choice => {
            if (choice === open) {
                void guardCommand('Open diagnosis report', async () => {
                    await window.showTextDocument(await workspace.openTextDocument(Uri.file(reportFile)), { preview: true });
                });
            }
        });
        return outcome;
    }

    // ---- Apply and measure ------------------------------------------------------------------------

    private async applyAndMeasure(req: FixRequest): Promise<FixOutcome> {
        const refused = this.refusedUntrusted('measuring a fix runs the script and a fixed copy of it', req.quiet);
        if (refused) {
            return refused;
        }
        const uri = Uri.parse(req.uri);
        if (uri.scheme !== 'file') {
            throw new Error('save the script to a file first: the fix is measured on the file on disk');
        }
        const doc = await workspace.openTextDocument(uri);
        if (!(await saveIfDirty(doc, 'Save and Measure', req.quiet))) {
            return { state: 'dismissed' };
        }
        const measuredText = doc.getText();
        const root = getWorkspaceFolders()[0]?.uri.fsPath;
        const rel = workspaceRelative(root, uri.fsPath);
        const config = getConfiguration(CONFIG_SECTION, uri);
        const options = fixOptions(rel, req, {
            args: this.trainArgs(uri.fsPath),
            pairs: config.get<number>('diagnose.pairs', DEFAULT_PAIRS),
            steps: config.get<number>('diagnose.steps', DEFAULT_STEPS),
        });
        const file = path.basename(uri.fsPath);
        const params: JobStartOf<typeof DIAGNOSE_FIX_JOB_KIND> = {
            kind: DIAGNOSE_FIX_JOB_KIND, options, progress: false,
            title: `Measure the ${req.code} fix of ${file}:${req.line} (${options.pairs} pairs)`,
        };
        const { job: started, ended } = await this.start(params);
        traceInfo(`diagnose-fix job ${started.id} started: ${JSON.stringify(options)}`);
        if (!req.quiet) {
            showJobProgress(this.server, started, `measuring the ${req.code} fix of ${file} (the file stays as it is)`,
                j => this.jobs.upsert(j));
        }
        const job = await ended;
        if (!job) {
            const lost = this.lost(started, `measuring the ${req.code} fix`, req.quiet === true);
            return { state: 'lost', jobId: started.id, error: lost.error };
        }
        if (job.state !== 'succeeded') {
            if (!req.quiet) {
                this.showEnd(job, `measuring the ${req.code} fix of ${file}`);
            }
            return { state: job.state as FixOutcome['state'], jobId: job.id, error: job.reason ?? undefined };
        }
        const realScript = await real(uri.fsPath);
        const where = resultPath(job.result, 'speedup') ?? await existing(reportCandidates(root, uri.fsPath, realScript, true));
        const read = parseSpeedup(job.result) ?? parseSpeedup(await readJson(where));
        const speedup = read && (read.script === uri.fsPath || read.script === realScript) && read.code === req.code ? read : null;
        if (!speedup) {
            const error = `the job succeeded but ${where} is not a measurement of the ${req.code} fix of ${file}`;
            if (!req.quiet) {
                void window.showWarningMessage(`Deepdive: ${error}; the file was not changed.`);
            }
            return { state: 'failed', jobId: job.id, error };
        }
        const line = speedupLine(speedup);
        if (!req.quiet) {
            void this.dashboard.reveal('diagnose').catch(err => traceError('opening the Diagnosis section failed:', err));
        }
        const choice = req.decide !== undefined ? (req.decide === 'keep' ? 'Keep' : 'Revert')
            : await window.showInformationMessage(`Deepdive: ${line}`, 'Keep', 'Revert');
        const decision = fixDecision(choice, measuredText, doc.isClosed ? measuredText : doc.getText());
        const outcome: FixOutcome = { state: 'succeeded', jobId: job.id, speedup, line, decision: decision.action };
        if (decision.action === 'keep') {
            const converter = await this.server.protocolConverter();
            const edit = await converter.asWorkspaceEdit(req.edit as unknown as Parameters<typeof converter.asWorkspaceEdit>[0]);
            outcome.applied = edit !== undefined && await workspace.applyEdit(edit);
            if (!outcome.applied && !req.quiet) {
                void window.showWarningMessage(`Deepdive: the editor did not take the ${req.code} fix; ${file} is unchanged.`);
            }
        } else if (decision.action === 'stale' && !req.quiet) {
            void window.showWarningMessage(`Deepdive: ${file} not changed: ${decision.why}.`);
        }
        return outcome;
    }

    // ---- shared ---------------------------------------------------------------------------------

    private refusedUntrusted(what: string, quiet?: boolean): { state: 'refused'; error: string } | undefined {
        if (isTrusted()) {
            return undefined;
        }
        const error = `Deepdive: ${what}, and this workspace is not trusted (Manage Workspace Trust to allow it).`;
        if (!quiet) {
            void window.showWarningMessage(error);
        }
        return { state: 'refused', error };
    }

    /** The script: the argument's, else the active Python file, else one the user picks. */
    private async scriptUri(a: DiagnoseArgs): Promise<Uri | undefined> {
        let uri: Uri | undefined;
        if (a.uri) {
            uri = Uri.parse(a.uri);
        } else if (a.path) {
            const root = getWorkspaceFolders()[0]?.uri.fsPath;
            uri = Uri.file(path.isAbsolute(a.path) || !root ? path.resolve(a.path) : path.join(root, a.path));
        } else {
            const active = window.activeTextEditor?.document;
            if (active && active.languageId === 'python') {
                uri = active.uri;
            } else {
                uri = (await window.showOpenDialog({
                    title: 'Deepdive: Diagnose Performance — the training script', canSelectMany: false, openLabel: 'Diagnose',
                    filters: { Python: ['py'] }, defaultUri: getWorkspaceFolders()[0]?.uri,
                }))?.[0];
            }
        }
        if (uri && uri.scheme !== 'file') {
            throw new Error('save the script to a file first: the diagnosis runs it from disk');
        }
        return uri;
    }

    /** The script's arguments the Train command remembers for it (none when it was never trained from the editor). */
    private trainArgs(script: string): string[] {
        const remembered = this.memory.get<Record<string, TrainArgs>>(TRAIN_MEMORY_KEY, {})[script];
        return Array.isArray(remembered?.args) ? remembered.args.filter((x): x is string => typeof x === 'string') : [];
    }

    private async start<K extends typeof DIAGNOSE_JOB_KIND | typeof DIAGNOSE_FIX_JOB_KIND>(params: JobStartOf<K>):
        Promise<{ job: JobInfo; ended: Promise<JobInfo | undefined> }> {
        const job = await this.server.request(Requests.jobsStart, params);
        this.jobs.upsert(job);
        const early = this.endedEarly.get(job.id) ?? (FINAL.has(job.state) ? job : undefined);
        this.endedEarly.delete(job.id);
        const ended = early ? Promise.resolve<JobInfo | undefined>(early)
            : new Promise<JobInfo | undefined>(resolve => this.waiters.set(job.id, resolve));
        return { job, ended };
    }

    private onJobEvent(e: JobEvent): void {
        if (e.type !== 'finished' || !e.job) {
            return;
        }
        const end = this.waiters.get(e.jobId);
        if (end) {
            this.waiters.delete(e.jobId);
            end(e.job);
        } else if (e.job.kind === DIAGNOSE_JOB_KIND || e.job.kind === DIAGNOSE_FIX_JOB_KIND) {
            this.endedEarly.set(e.jobId, e.job);  // its start request's answer may still be on the way
            for (const id of [...this.endedEarly.keys()].slice(0, Math.max(0, this.endedEarly.size - EARLY_LIMIT))) {
                this.endedEarly.delete(id);
            }
        }
    }

    private lost(job: JobInfo, doing: string, quiet: boolean): { state: 'lost'; jobId: string; job: JobInfo; error: string } {
        const error = 'the Deepdive daemon stopped while the job ran';
        if (!quiet) {
            void window.showWarningMessage(`Deepdive: lost track of ${doing}: ${error}.`);
        }
        return { state: 'lost', jobId: job.id, job, error };
    }

    private showEnd(job: JobInfo, doing: string): void {
        const output = 'Show Output';
        const show = job.state === 'cancelled' ? window.showInformationMessage : window.showWarningMessage;
        void show(`Deepdive: ${doing} ${job.state}${job.reason ? `: ${job.reason}` : ''}.`, output).then(choice => {
            if (choice === output) {
                void executeCommand(Commands.showJobOutput, job.id);
            }
        });
    }
}

/** Saves a script with unsaved changes after asking (the job runs the file on disk); false when the user declines. */
async function saveIfDirty(doc: TextDocument, action: string, quiet?: boolean): Promise<boolean> {
    if (!doc.isDirty) {
        return true;
    }
    if (!quiet) {
        const answer = await window.showWarningMessage(
            `${path.basename(doc.uri.fsPath)} has unsaved changes; the job runs the file on disk.`, { modal: true }, action);
        if (answer !== action) {
            return false;
        }
    }
    if (!(await doc.save())) {
        throw new Error(`${path.basename(doc.uri.fsPath)} could not be saved`);
    }
    return true;
}

/** The script's path with its links resolved (the daemon names reports after the resolved path). */
async function real(file: string): Promise<string> {
    return fs.realpath(file).catch(() => file);
}

/** The first of the paths that exists, else the first. */
async function existing(paths: string[]): Promise<string> {
    for (const p of paths) {
        if (await fs.access(p).then(() => true, () => false)) {
            return p;
        }
    }
    return paths[0];
}

async function readJson(file: string): Promise<unknown> {
    try {
        return JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
    } catch {
        return undefined;
    }
}

