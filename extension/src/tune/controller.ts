// Hyperparameter search from the editor: "Deepdive: Tune Hyperparameters…" asks for the script, trials,
// parallelism, metric and direction, starts the daemon's `tune` job (a progress notification has the Cancel
// button) and opens the dashboard, whose Tune section shows the study live. A "Tune" CodeLens sits above
// a script's first `suggest(` call. When the job ends with best parameters, a notification button, a
// CodeLens and a code action on the `suggest(` lines rewrite the script's defaults (deepdive/tune/applyBest).
import { guardCommand } from '../common/guard';
import { scriptToRun } from '../common/pickScript';
import { showJobProgress } from '../common/jobProgress';
import * as os from 'os';
import * as path from 'path';
import {
    CancellationToken,
    CodeAction,
    CodeActionKind,
    CodeActionProvider,
    CodeLens,
    CodeLensProvider,
    Disposable,
    EventEmitter,
    languages,
    Range,
    TextDocument,
    Uri,
    window,
    workspace,
    WorkspaceEdit,
} from 'vscode';
import { Commands, CONFIG_SECTION } from '../common/constants';
import { errorMessage } from '../common/interpreter';
import { traceError, traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { executeCommand, getConfiguration, getWorkspaceFolders, registerCommand } from '../common/vscodeapi';
import { JobEvent, JobInfo, JobStartOf, Requests, Vocabularies } from '../protocol';
import { JobsView } from '../views/jobs';
import {
    bestParamsOf, bestValueOf, checkMetric, checkParallel, checkTrials, DEFAULT_TRIALS, describeApply, describeParams,
    Direction, Params, parseTuneArgs, scriptOfJob, toPlainEdits, TuneArgs, tuneOptions,
} from './args';
import { defaultMetric, firstSuggestLine, guessDirection, MetricChoice, suggestLines } from './finder';
import { formatSig } from './rounding';

export const TUNE_JOB_KIND = 'tune';
const APPLY_KIND = CodeActionKind.RefactorRewrite.append('deepdive.tune');
const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);

/** What `deepdive.tune` resolves to (the integration tests read it). */
export interface TuneOutcome {
    state: 'started' | 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    jobId?: string;
    job?: JobInfo;
    path?: string;
    bestParams?: Params;
    error?: string;
}

/** What `deepdive.applyTuneBest` resolves to. */
export interface ApplyOutcome {
    state: 'applied' | 'none' | 'failed';
    changed?: string[];
    unchanged?: string[];
    missing?: string[];
    edits?: number;
    error?: string;
}

interface Started {
    path: string;
    metric: string;
    quiet: boolean;
}

interface BestFor {
    params: Params;
    value?: number;
    metric?: string;
    jobId: string;
}

export class TuneController implements CodeLensProvider, CodeActionProvider, Disposable {
    private readonly started = new Map<string, Started>();
    private readonly waiters = new Map<string, (job: JobInfo) => void>();
    /** Best parameters of the newest finished tune job per script (by file system path). */
    private readonly best = new Map<string, BestFor>();
    private readonly lensEmitter = new EventEmitter<void>();
    readonly onDidChangeCodeLenses = this.lensEmitter.event;

    constructor(private readonly server: DeepdiveServer, private readonly jobs: JobsView) {}

    register(): Disposable[] {
        const python = [{ language: 'python', scheme: 'file' }, { language: 'python', scheme: 'untitled' }];
        return [
            this,
            registerCommand(Commands.tune, (arg?: unknown) => this.guard('Tune hyperparameters', () => this.tune(parseTuneArgs(arg)))),
            registerCommand(Commands.applyTuneBest, (arg?: unknown) => this.applyGuard(arg)),
            languages.registerCodeLensProvider(python, this),
            languages.registerCodeActionsProvider(python, this, { providedCodeActionKinds: [APPLY_KIND] }),
            this.server.onJobEvent(e => this.onJobEvent(e)),
            workspace.onDidChangeConfiguration(e => {
                if (e.affectsConfiguration(`${CONFIG_SECTION}.tune.codeLens`)) {
                    this.lensEmitter.fire();
                }
            }),
        ];
    }

    dispose(): void {
        this.lensEmitter.dispose();
    }

    private guard(what: string, fn: () => Promise<TuneOutcome>): Promise<TuneOutcome> {
        return guardCommand(what, fn);
    }

    // ---- the Tune command ---------------------------------------------------------------------

    private async tune(a: TuneArgs): Promise<TuneOutcome> {
        const picked = await scriptToRun(a, 'tune', 'tuning');
        if (!('uri' in picked)) {
            return picked;
        }
        const { uri, doc } = picked;
        const text = doc.getText();
        const trials = a.trials ?? (await askNumber('Trials', 'How many trials the search runs', String(DEFAULT_TRIALS), checkTrials));
        if (trials === undefined) {
            return { state: 'dismissed' };
        }
        const cpus = Math.max(1, os.cpus().length);
        const parallel = a.parallel ?? (await askNumber('Parallel trials', `How many trials run at once (1 to ${cpus}, the CPU count)`, '1', v => checkParallel(v, cpus)));
        if (parallel === undefined) {
            return { state: 'dismissed' };
        }
        const found = defaultMetric(text);  // the script's evaluation metric, not the batch loss it logs first
        const metric = a.metric ?? (await window.showInputBox({
            title: 'Deepdive: Tune — metric',
            prompt: `The metric to optimise, as the script reports it with run.log(name=...). Default ${found.metric}: ${found.source}`,
            value: found.metric, ignoreFocusOut: true, validateInput: checkMetric,
        }))?.trim();
        if (!metric) {
            return { state: 'dismissed' };
        }
        const direction = a.direction ?? (await pickDirection(metric, metric === found.metric ? found : undefined));
        if (!direction) {
            return { state: 'dismissed' };
        }
        const options = tuneOptions(uri.fsPath, { ...a, trials, parallel, metric, direction });
        const file = path.basename(uri.fsPath);
        const params: JobStartOf<typeof TUNE_JOB_KIND> = {
            kind: TUNE_JOB_KIND,
            options,
            title: `Tune ${file} (${trials} trials, ${direction} ${metric})`,
            progress: false,  // the notification below, with Cancel (the daemon's would sit in the status bar)
        };
        const job = await this.server.request(Requests.jobsStart, params);
        traceInfo(`tune job ${job.id} started for ${uri.fsPath}: ${JSON.stringify(options)}`);
        this.jobs.upsert(job);
        if (!a.quiet) {
            showJobProgress(this.server, job, `tuning ${file}`, j => this.jobs.upsert(j));
        }
        this.started.set(job.id, { path: uri.fsPath, metric, quiet: a.quiet === true });
        const ended = a.wait ? new Promise<JobInfo>(resolve => this.waiters.set(job.id, resolve)) : undefined;
        if (FINAL.has(job.state)) {
            this.finished(job);
        }
        if (!a.quiet) {
            void executeCommand(Commands.openDashboard);
        }
        if (!ended) {
            return { state: 'started', jobId: job.id, job, path: uri.fsPath };
        }
        const end = await ended;
        return { state: end.state as TuneOutcome['state'], jobId: end.id, job: end, path: uri.fsPath, bestParams: bestParamsOf(end.result) };
    }

    // ---- job events ---------------------------------------------------------------------------

    private onJobEvent(e: JobEvent): void {
        if (e.type === 'finished' && e.job && (this.started.has(e.jobId) || e.job.kind === TUNE_JOB_KIND)) {
            this.finished(e.job);
        }
    }

    private finished(job: JobInfo): void {
        const mine = this.started.get(job.id);
        this.started.delete(job.id);
        const script = mine?.path ?? scriptOfJob(job);
        const params = bestParamsOf(job.result);
        if (params && script) {
            this.best.set(script, { params, value: bestValueOf(job.result), metric: mine?.metric, jobId: job.id });
            this.lensEmitter.fire();
        }
        const waiter = this.waiters.get(job.id);
        this.waiters.delete(job.id);
        waiter?.(job);
        if (!mine || mine.quiet) {
            return;
        }
        const file = script ? path.basename(script) : 'the script';
        const output = 'Show Output';
        if (job.state === 'succeeded' && params && script) {
            const value = bestValueOf(job.result);
            const apply = 'Apply Best Parameters';
            const best = value !== undefined ? ` best ${mine.metric} ${formatSig(value)}:` : ' best parameters:';
            void window.showInformationMessage(`Deepdive: tuning ${file} finished;${best} ${describeParams(params)}.`, apply, output).then(choice => {
                if (choice === apply) {
                    void this.applyGuard({ uri: Uri.file(script).toString(), params });
                } else if (choice === output) {
                    void executeCommand(Commands.showJobOutput, job.id);
                }
            });
        } else {
            const how = job.state === 'succeeded' ? 'finished without a complete trial' : job.state;
            const show = job.state === 'failed' || job.state === 'lost' ? window.showWarningMessage : window.showInformationMessage;
            void show(`Deepdive: tuning ${file} ${how}${job.reason ? `: ${job.reason}` : ''}.`, output).then(choice => {
                if (choice === output) {
                    void executeCommand(Commands.showJobOutput, job.id);
                }
            });
        }
    }

    // ---- apply the best parameters ------------------------------------------------------------

    private async applyGuard(arg: unknown): Promise<ApplyOutcome> {
        try {
            return await this.applyBest(arg);
        } catch (err) {
            traceError('Apply best parameters failed:', err);
            void window.showErrorMessage(`Deepdive: applying the best parameters failed: ${errorMessage(err)}`);
            return { state: 'failed', error: errorMessage(err) };
        }
    }

    private async applyBest(arg: unknown): Promise<ApplyOutcome> {
        const a = parseTuneArgs(arg);
        const raw = arg && typeof arg === 'object' ? (arg as Record<string, unknown>).params : undefined;
        const given = raw && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Params) : undefined;
        const uri = a.uri ? Uri.parse(a.uri) : a.path ? Uri.file(path.resolve(getWorkspaceFolders()[0]?.uri.fsPath ?? '', a.path))
            : window.activeTextEditor?.document.uri;
        if (!uri) {
            throw new Error('no script given and no editor is active');
        }
        const params = given ?? this.best.get(uri.fsPath)?.params ?? (await this.bestFromJobs(uri.fsPath));
        if (!params) {
            if (!a.quiet) {
                void window.showInformationMessage(`Deepdive: no finished tune job has best parameters for ${path.basename(uri.fsPath)} yet.`);
            }
            return { state: 'none' };
        }
        const doc = await workspace.openTextDocument(uri);
        const version = doc.version;
        const result = await this.server.request(Requests.tuneApplybest, { path: uri.fsPath, params, text: doc.getText() });
        if (doc.version !== version) {
            throw new Error('the script changed while the edits were computed; run the command again');
        }
        const edits = toPlainEdits(result.edits);
        if (edits.length) {
            const we = new WorkspaceEdit();
            for (const e of edits) {
                we.replace(uri, new Range(e.start.line, e.start.character, e.end.line, e.end.character), e.newText);
            }
            if (!(await workspace.applyEdit(we))) {
                throw new Error('the editor refused the edit');
            }
        }
        if (!a.quiet) {
            void window.showInformationMessage(`Deepdive: ${describeApply(result, path.basename(uri.fsPath))}.`);
        }
        return { state: 'applied', changed: result.changed, unchanged: result.unchanged ?? [], missing: result.missing ?? [], edits: edits.length };
    }

    /** The best parameters of the newest succeeded tune job of this script in the daemon's job list. */
    private async bestFromJobs(script: string): Promise<Params | undefined> {
        try {
            const { jobs } = await this.server.request(Requests.jobsList, { limit: 100 });
            for (const j of jobs) {
                if (j.kind === TUNE_JOB_KIND && j.state === 'succeeded' && scriptOfJob(j) === script) {
                    const p = bestParamsOf(j.result);
                    if (p) {
                        return p;
                    }
                }
            }
        } catch (err) {
            traceError('listing jobs for best parameters failed:', err);
        }
        return undefined;
    }

    // ---- CodeLens and code action -------------------------------------------------------------

    provideCodeLenses(doc: TextDocument, _token: CancellationToken): CodeLens[] {
        if (getConfiguration(CONFIG_SECTION, doc.uri).get<boolean>('tune.codeLens', true) === false) {
            return [];
        }
        const line = firstSuggestLine(doc.getText());
        if (line === undefined) {
            return [];
        }
        const range = new Range(line, 0, line, 0);
        const lenses = [new CodeLens(range, {
            title: '$(beaker) Tune', command: Commands.tune, arguments: [{ uri: doc.uri.toString() }],
            tooltip: 'Search this script\'s suggest() hyperparameters with Optuna (Deepdive: Tune Hyperparameters…)',
        })];
        const best = this.best.get(doc.uri.fsPath);
        if (best && doc.uri.scheme === 'file') {
            lenses.push(new CodeLens(range, {
                title: '$(check) Apply best parameters', command: Commands.applyTuneBest,
                arguments: [{ uri: doc.uri.toString(), params: best.params }], tooltip: describeParams(best.params),
            }));
        }
        return lenses;
    }

    provideCodeActions(doc: TextDocument, range: Range): CodeAction[] {
        const best = this.best.get(doc.uri.fsPath);
        if (!best || doc.uri.scheme !== 'file') {
            return [];
        }
        const lines = suggestLines(doc.getText());
        if (!lines.some(l => l >= range.start.line && l <= range.end.line)) {
            return [];
        }
        const action = new CodeAction(`Apply best tuned parameters (${describeParams(best.params)})`, APPLY_KIND);
        action.command = { title: action.title, command: Commands.applyTuneBest, arguments: [{ uri: doc.uri.toString(), params: best.params }] };
        return [action];
    }
}

async function askNumber(title: string, prompt: string, value: string, validateInput: (v: string) => string | undefined): Promise<number | undefined> {
    const s = await window.showInputBox({ title: `Deepdive: Tune — ${title.toLowerCase()}`, prompt, value, ignoreFocusOut: true, validateInput });
    return s === undefined ? undefined : Number(s.trim());
}

/** Minimize or maximize; the script's own say first (keep_best's mode), else the name's guess. */
async function pickDirection(metric: string, found?: MetricChoice): Promise<Direction | undefined> {
    const guess = found?.direction ?? guessDirection(metric);
    const why = found ? `from the script: ${found.source}` : `likely for ${metric}`;
    const items = Vocabularies.tuneDirections.map(d => ({ label: d, description: d === guess ? why : undefined, d }));
    items.sort((x, y) => Number(y.d === guess) - Number(x.d === guess));
    const picked = await window.showQuickPick(items, { title: `Deepdive: Tune — ${metric} should be`, ignoreFocusOut: true });
    return picked?.d;
}
