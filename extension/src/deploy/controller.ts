// Deployment from the editor: "Deepdive: Deploy Model…" takes the model's script (the command's argument, the
// active Python editor, or a file picked) and optionally its trained model file, then runs three daemon jobs
// in turn: `deploy-export` (the forms, each checked against eager), `deploy-bench` (the runtimes measured on
// this machine, the fastest within tolerance chosen) and `deploy-serve` (the model served on 127.0.0.1 over the
// Open Inference Protocol v2 with dynamic batching). Each job shows a cancellable notification with its
// progress (common/jobProgress: cancel = deepdive/jobs/cancel); the serve job's notification stays while it
// serves, and its Cancel stops the server. Once the server listens the dashboard opens at its Serving section,
// which the server's `serve.stats` hub events fill in.
// Refused in an untrusted workspace: the jobs import the script and unpickle the model.
import * as path from 'path';
import { Disposable, env, QuickPickItem, Uri, window, workspace } from 'vscode';
import { Commands } from '../common/constants';
import { guardCommand } from '../common/guard';
import { showJobProgress } from '../common/jobProgress';
import { pickScript } from '../common/pickScript';
import { traceError, traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { executeCommand, getWorkspaceFolders, isTrusted, registerCommand } from '../common/vscodeapi';
import { JobEvent, JobInfo, JobOptionTypes, JobStartOf, Requests } from '../protocol';
import { JobsView } from '../views/jobs';
import { DashboardViews } from '../views/dashboard';
import { MODEL_EXTENSIONS, rankCandidates } from '../compress/options';
import {
    BENCH_KIND, benchOptions, choiceOf, DEPLOY_COMMAND, DeployArgs, describeExport, endpoints, EXPORT_KIND, exportedOf,
    exportOptions, parseDeployArgs, SERVE_KIND, serveOptions, servingOf,
} from './options';

const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);
const EXCLUDE = '**/{node_modules,.venv,venv,.git,__pycache__,.deepdive}/**';
const BROWSE = '$(folder-opened) Browse…';
const NO_MODEL = '$(circle-slash) No model file';

/** What `deepdive.deployModel` resolves to (integration tests read it). */
export interface DeployOutcome {
    state: 'serving' | 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    /** The step that ended the command (export, bench or serve). */
    step?: 'export' | 'bench' | 'serve';
    folder?: string;
    /** deploy bench's choice (its label) and why. */
    chosen?: string;
    reason?: string;
    url?: string;
    model?: string;
    serveJobId?: string;
    error?: string;
}

type Kind = typeof EXPORT_KIND | typeof BENCH_KIND | typeof SERVE_KIND;

interface Waiting {
    finished: (job: JobInfo | undefined) => void;
    data?: (e: JobEvent) => void;
}

interface PathItem extends QuickPickItem {
    file?: string | null;
}

export class DeployController implements Disposable {
    private readonly waiting = new Map<string, Waiting>();
    /** Events of jobs whose start request is still in flight (a fast job's `finished` may beat the answer). */
    private readonly early = new Map<string, JobEvent[]>();
    private starting = 0;

    constructor(private readonly server: DeepdiveServer, private readonly jobs: JobsView, private readonly dashboard: DashboardViews) {}

    register(): Disposable[] {
        return [
            this,
            registerCommand(DEPLOY_COMMAND, (arg?: unknown) => guardCommand('Deploy model', () => this.deploy(parseDeployArgs(arg)))),
            this.server.onJobEvent(e => this.onJobEvent(e)),
            this.server.onDidChangeStatus(s => {
                if (s.state !== 'ready') {
                    this.endAll();  // the daemon's jobs end with it: say so instead of waiting forever
                }
            }),
        ];
    }

    dispose(): void {
        this.endAll();
    }

    private endAll(): void {
        const all = [...this.waiting.values()];
        this.waiting.clear();
        for (const w of all) {
            w.finished(undefined);
        }
    }

    // ---- the command ----------------------------------------------------------------------------

    private async deploy(a: DeployArgs): Promise<DeployOutcome> {
        if (!isTrusted()) {
            const why = 'Deepdive: deploying a model runs its script and loads the pickled model, and this workspace is not '
                + 'trusted (Manage Workspace Trust to allow it).';
            if (!a.quiet) {
                void window.showWarningMessage(why);
            }
            return { state: 'refused', error: why };
        }
        const uri = await pickScript(a, 'Deepdive: Deploy — the model\'s script (build_model() and example inputs)', 'Deploy');
        if (!uri) {
            return { state: 'dismissed' };
        }
        if (uri.scheme !== 'file') {
            throw new Error('save the script to a file first: the export job runs it from disk');
        }
        const doc = await workspace.openTextDocument(uri);
        if (doc.isDirty) {
            await doc.save();
        }
        const script = uri.fsPath;
        const model = a.model !== undefined ? (a.model === null ? null : resolveInWorkspace(a.model)) : await pickModel(script);
        if (model === undefined) {
            return { state: 'dismissed' };
        }
        const name = path.basename(script);

        // 1. export
        const exportJob = await this.follow(EXPORT_KIND, exportOptions(script, model, a.forms), `Deploy ${name}: export`, `exporting ${name}`, a);
        const result = exportedOf(exportJob?.result);
        if (!result || !result.forms.includes('eager') || exportJob?.state === 'cancelled') {
            return this.stopped('export', exportJob, a, `exporting ${name}`);
        }
        if (exportJob?.state !== 'succeeded' && !a.quiet) {
            void window.showWarningMessage(`Deepdive: ${name}: ${describeExport(result)}. Going on with the forms exported.`);
        }
        const outcome: DeployOutcome = { state: 'succeeded', folder: result.folder };

        // 2. bench (a failure here is not the end: the server runs the eager form)
        if (!a.skipBench) {
            const bench = await this.follow(BENCH_KIND, benchOptions(result.folder, a.benchBudgetS, a.benchForms), `Deploy ${name}: choose the runtime`,
                `measuring the runtimes of ${name}`, a);
            if (!bench || bench.state === 'cancelled') {
                return { ...this.stopped('bench', bench, a, `measuring the runtimes of ${name}`), folder: result.folder };
            }
            const choice = choiceOf(bench.result);
            if (choice) {
                outcome.chosen = choice.label;
                outcome.reason = choice.reason;
            } else if (!a.quiet) {
                void window.showWarningMessage(`Deepdive: measuring the runtimes of ${name} ${bench.state}`
                    + `${bench.reason ? `: ${bench.reason}` : ''}; serving the eager form.`);
            }
        }

        // 3. serve, until cancelled: the command resolves once the server listens (its `deploy.serve` data event)
        let serving: ReturnType<typeof servingOf>;
        let listens!: () => void;
        const listening = new Promise<void>(resolve => (listens = resolve));
        const served = this.start(SERVE_KIND, serveOptions(result.folder, a), `Deploy ${name}: serve`, `serving ${name}`, a, e => {
            serving ??= servingOf(e);
            if (serving) {
                listens();
            }
        });
        const jobId = await served.started;
        await Promise.race([listening, served.done]);
        if (!serving) {
            const job = await served.done;
            return { ...this.stopped('serve', job, a, `serving ${name}`), folder: result.folder, chosen: outcome.chosen };
        }
        const url = serving;
        traceInfo(`deploy: ${url.model} (${url.form}) served at ${url.url} by job ${jobId}`);
        if (!a.quiet) {
            void this.dashboard.reveal('serve').catch(err => traceError('opening the Serving section failed:', err));
            const ends = endpoints(url.url, url.model);
            const copy = 'Copy Infer URL';
            const stop = 'Stop Server';
            void window.showInformationMessage(`Deepdive: serving ${url.model} (${url.form}) at ${url.url}`
                + `${outcome.chosen ? `, runtime ${outcome.chosen}` : ''}. POST ${ends.infer}`, copy, stop).then(choice => {
                if (choice === copy) {
                    void env.clipboard.writeText(ends.infer);
                } else if (choice === stop) {
                    void this.server.request(Requests.jobsCancel, { id: jobId }).then(j => this.jobs.upsert(j),
                        (err: unknown) => traceError(`stopping the server (job ${jobId}) failed:`, err));
                }
            });
        }
        return { ...outcome, state: 'serving', step: 'serve', url: url.url, model: url.model, serveJobId: jobId };
    }

    /** Starts a job of `kind` and waits for its end: the finished job, or undefined when the daemon went away. */
    private async follow<K extends Kind>(kind: K, options: JobOptionTypes[K], title: string, doing: string, a: DeployArgs): Promise<JobInfo | undefined> {
        const job = this.start(kind, options, title, doing, a);
        await job.started;
        return job.done;
    }

    /**
     * Starts a job of `kind`: a notification with its progress and Cancel (unless quiet), `onData` for its data
     * events. `started` resolves with its id; `done` with the finished job (undefined: the daemon went away).
     */
    private start<K extends Kind>(kind: K, options: JobOptionTypes[K], title: string, doing: string, a: DeployArgs,
        onData?: (e: JobEvent) => void): { started: Promise<string>; done: Promise<JobInfo | undefined> } {
        let finish!: (job: JobInfo | undefined) => void;
        const done = new Promise<JobInfo | undefined>(resolve => (finish = resolve));
        const started = (async () => {
            const params = { kind, options, title, progress: false } as JobStartOf<K>;
            let job: JobInfo;
            this.starting++;
            try {
                job = await this.server.request(Requests.jobsStart, params);
            } catch (err) {
                finish(undefined);
                throw err;
            } finally {
                this.starting--;
            }
            traceInfo(`${kind} job ${job.id} started: ${JSON.stringify(options)}`);
            this.jobs.upsert(job);
            this.waiting.set(job.id, { finished: finish, data: onData });
            const early = this.early.get(job.id) ?? [];
            this.early.delete(job.id);
            if (this.starting === 0) {
                this.early.clear();
            }
            for (const e of early) {
                this.onJobEvent(e);
            }
            if (FINAL.has(job.state) && this.waiting.has(job.id)) {
                this.waiting.delete(job.id);
                finish(job);
            }
            if (!a.quiet) {
                showJobProgress(this.server, job, doing, j => this.jobs.upsert(j));
            }
            return job.id;
        })();
        return { started, done };
    }

    private onJobEvent(e: JobEvent): void {
        const w = this.waiting.get(e.jobId);
        if (!w) {
            const kind = e.job?.kind;
            if (this.starting > 0 && (kind === undefined || kind === EXPORT_KIND || kind === BENCH_KIND || kind === SERVE_KIND)) {
                const list = this.early.get(e.jobId) ?? [];
                if (list.length < 100) {
                    list.push(e);
                    this.early.set(e.jobId, list);
                }
            }
            return;
        }
        if (e.type === 'data') {
            w.data?.(e);
        } else if (e.type === 'finished' && e.job) {
            this.waiting.delete(e.jobId);
            w.finished(e.job);
        }
    }

    /** The outcome of a step that ended the command, said to the user unless quiet. */
    private stopped(step: 'export' | 'bench' | 'serve', job: JobInfo | undefined, a: DeployArgs, doing: string): DeployOutcome {
        if (!job) {
            const why = 'the Deepdive daemon stopped while the job ran';
            if (!a.quiet) {
                void window.showWarningMessage(`Deepdive: lost track of ${doing}: ${why}.`);
            }
            return { state: 'lost', step, error: why };
        }
        const state = job.state === 'succeeded' ? 'failed' : job.state as DeployOutcome['state'];
        const why = job.reason ?? (step === 'export' ? 'the eager form was not exported' : step === 'serve' ? 'the server stopped before it listened' : undefined);
        if (!a.quiet) {
            const output = 'Show Output';
            const show = job.state === 'cancelled' ? window.showInformationMessage : window.showWarningMessage;
            void show(`Deepdive: ${doing} ${job.state === 'succeeded' ? 'ended' : job.state}${why ? `: ${why}` : ''}.`, output).then(choice => {
                if (choice === output) {
                    void executeCommand(Commands.showJobOutput, job.id);
                }
            });
        }
        return { state, step, error: why };
    }
}

function resolveInWorkspace(p: string): string {
    const root = getWorkspaceFolders()[0]?.uri.fsPath;
    return path.isAbsolute(p) || !root ? path.resolve(p) : path.join(root, p);
}

/** The trained model file: one of the workspace's, one browsed to, or none (null: build_model()'s weights); undefined: dismissed. */
async function pickModel(script: string): Promise<string | null | undefined> {
    const found = await workspace.findFiles(`**/*.{${MODEL_EXTENSIONS.join(',')}}`, EXCLUDE, 1000);
    const files = rankCandidates(found.filter(u => u.scheme === 'file').map(u => u.fsPath), /./, script)  // beside the script first;
    const root = getWorkspaceFolders()[0]?.uri.fsPath;
    const items: PathItem[] = [
        { label: NO_MODEL, description: 'export build_model()\'s initial (untrained) weights', file: null },
        ...files.map(f => ({ label: path.basename(f), description: root ? path.relative(root, path.dirname(f)) || '.' : path.dirname(f), file: f })),
        { label: BROWSE, description: 'another file' },
    ];
    const picked = await window.showQuickPick(items, {
        title: 'Deepdive: Deploy — the trained model (optional)', ignoreFocusOut: true, matchOnDescription: true,
        placeHolder: 'A model saved with torch.save, a state_dict for build_model(), TorchScript, or a deepdive compress output',
    });
    if (!picked) {
        return undefined;
    }
    if (picked.label !== BROWSE) {
        return picked.file ?? null;
    }
    const uris = await window.showOpenDialog({
        title: 'Deepdive: Deploy — the trained model', canSelectMany: false, openLabel: 'Deploy',
        filters: { 'PyTorch model': [...MODEL_EXTENSIONS] }, defaultUri: Uri.file(path.dirname(script)),
    });
    return uris?.[0]?.fsPath;
}
