// Hyperparameter search from the editor: "Deepdive: Tune Hyperparameters…" asks for the script, trials,
// parallelism, metric, direction and whether to confirm the top K trials with fresh seeds (`--confirm K`),
// starts the daemon's `tune` job (a progress notification has the Cancel button) and opens the dashboard,
// whose Tune section shows the study live. A "Tune" CodeLens sits above a script's first `suggest(` call.
// When the job ends with an answer (the confirmed best, else the search's best), a notification button, a
// CodeLens and a code action on the `suggest(` lines rewrite the script's defaults (deepdive/tune/applyBest),
// each saying which of the two it writes.
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
    Answer, answerOf, checkMetric, checkParallel, checkTrials, CONFIRM_CHOICES, DEFAULT_CONFIRM_SEEDS, DEFAULT_TRIALS,
    describeAnswer, describeApply, describeParams, Direction, Params, parseTuneArgs, scriptOfJob, toPlainEdits, TuneArgs,
    tuneOptions,
} from './args';
import { defaultMetric, firstSuggestLine, guessDirection, MetricChoice, suggestLines } from './finder';

export const TUNE_JOB_KIND = 'tune';
const APPLY_KIND = CodeActionKind.RefactorRewrite.append('deepdive.tune');
const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);

/** What `deepdive.tune` resolves to (the integration tests read it). */
export interface TuneOutcome {
    state: 'started' | 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    jobId?: string;
    job?: JobInfo;
    path?: string;
    /** The answer's parameters (the confirmed best with `confirm`, else the search's best). */
    bestParams?: Params;
    answer?: Answer;
    error?: string;
}

/** What `deepdive.applyTuneBest` resolves to. */
export interface ApplyOutcome {
    state: 'applied' | 'none' | 'failed';
    /** Which parameters were written ("the confirmed best, trial 12 (mean 0.7836 over 3 seeds)"), when known. */
    what?: string;
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
    answer: Answer;
    /** describeAnswer's words for it. */
    what: string;
    jobId: string;
}

export class TuneController implements CodeLensProvider, CodeActionProvider, Disposable {
    private readonly started = new Map<string, Started>();
    private readonly waiters = new Map<string, (job: JobInfo) => void>();
    /** The answer of the newest finished tune job per script (by file system path). */
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
        const seeds = a.confirmSeeds ?? DEFAULT_CONFIRM_SEEDS;
        const confirm = a.confirm ?? (await pickConfirm(trials, seeds));
        if (confirm === undefined) {
            return { state: 'dismissed' };
        }
        const options = tuneOptions(uri.fsPath, { ...a, trials, parallel, metric, direction, confirm, confirmSeeds: seeds });
        const file = path.basename(uri.fsPath);
        const confirmed = confirm ? `, top ${confirm} confirmed with ${seeds} seeds` : '';
        const params: JobStartOf<typeof TUNE_JOB_KIND> = {
            kind: TUNE_JOB_KIND,
            options,
            title: `Tune ${file} (${trials} trials, ${direction} ${metric}${confirmed})`,
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
        const answer = answerOf(end.result);
        return { state: end.state as TuneOutcome['state'], jobId: end.id, job: end, path: uri.fsPath, bestParams: answer?.params, answer };
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
        const answer = answerOf(job.result);
        const what = answer ? describeAnswer(answer, mine?.metric ?? metricOfJob(job)) : '';
        if (answer && script) {
            this.best.set(script, { answer, what, jobId: job.id });
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
        if (job.state === 'succeeded' && answer && script) {
            const apply = 'Apply Best Parameters';
            const why = answer.reason ? ` ${answer.reason}` : '';
            void window.showInformationMessage(`Deepdive: tuning ${file} finished; ${what}: ${describeParams(answer.params)}.${why}`, apply, output).then(choice => {
                if (choice === apply) {
                    void this.applyGuard({ uri: Uri.file(script).toString(), params: answer.params, what });
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
        const obj = arg && typeof arg === 'object' ? (arg as Record<string, unknown>) : {};
        const raw = obj.params;
        const given = raw && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Params) : undefined;
        const uri = a.uri ? Uri.parse(a.uri) : a.path ? Uri.file(path.resolve(getWorkspaceFolders()[0]?.uri.fsPath ?? '', a.path))
            : window.activeTextEditor?.document.uri;
        if (!uri) {
            throw new Error('no script given and no editor is active');
        }
        const known = given ? undefined : (this.best.get(uri.fsPath) ?? (await this.bestFromJobs(uri.fsPath)));
        const params = given ?? known?.answer.params;
        const what = given ? (typeof obj.what === 'string' && obj.what ? obj.what : undefined) : known?.what;
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
            const which = what ? `applied ${what}: ` : '';
            void window.showInformationMessage(`Deepdive: ${which}${describeApply(result, path.basename(uri.fsPath))}.`);
        }
        const done: ApplyOutcome = { state: 'applied', changed: result.changed, unchanged: result.unchanged ?? [], missing: result.missing ?? [], edits: edits.length };
        if (what) {
            done.what = what;
        }
        return done;
    }

    /** The answer of the newest succeeded tune job of this script in the daemon's job list. */
    private async bestFromJobs(script: string): Promise<BestFor | undefined> {
        try {
            const { jobs } = await this.server.request(Requests.jobsList, { limit: 100 });
            for (const j of jobs) {
                if (j.kind === TUNE_JOB_KIND && j.state === 'succeeded' && scriptOfJob(j) === script) {
                    const answer = answerOf(j.result);
                    if (answer) {
                        return { answer, what: describeAnswer(answer, metricOfJob(j)), jobId: j.id };
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
                title: `$(check) Apply best parameters: ${best.what}`, command: Commands.applyTuneBest,
                arguments: [{ uri: doc.uri.toString(), params: best.answer.params, what: best.what }],
                tooltip: `${describeParams(best.answer.params)}${best.answer.reason ? `\n${best.answer.reason}` : ''}`,
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
        const action = new CodeAction(`Apply best tuned parameters, ${best.what}: ${describeParams(best.answer.params)}`, APPLY_KIND);
        action.command = {
            title: action.title, command: Commands.applyTuneBest,
            arguments: [{ uri: doc.uri.toString(), params: best.answer.params, what: best.what }],
        };
        return [action];
    }
}

async function askNumber(title: string, prompt: string, value: string, validateInput: (v: string) => string | undefined): Promise<number | undefined> {
    const s = await window.showInputBox({ title: `Deepdive: Tune — ${title.toLowerCase()}`, prompt, value, ignoreFocusOut: true, validateInput });
    return s === undefined ? undefined : Number(s.trim());
}

/**
 * "Confirm the top K with fresh seeds": off, 3 or 5 (no more than the trials), each saying what it costs.
 * Undefined when dismissed.
 */
async function pickConfirm(trials: number, seeds: number): Promise<number | undefined> {
    const items = CONFIRM_CHOICES.filter(k => k <= trials).map(k => k === 0
        ? { label: 'Off', description: 'the search\'s best trial is the answer', k }
        : {
            label: `Top ${k}`, k,
            description: `re-train the ${k} best trials with ${seeds} fresh seeds each (${k * seeds} more trainings); the best mean is the answer`,
        });
    const picked = await window.showQuickPick(items, {
        title: 'Deepdive: Tune — confirm the top K with fresh seeds',
        placeHolder: 'A search\'s best value is partly luck of the seed: re-training its top trials and taking the best mean corrects for it',
        ignoreFocusOut: true,
    });
    return picked?.k;
}

/** The metric a tune job optimised, from its argv's `--metric` (undefined when the job didn't name one). */
function metricOfJob(job: Pick<JobInfo, 'argv'>): string | undefined {
    const i = job.argv.indexOf('--metric');
    return i >= 0 && i + 1 < job.argv.length ? job.argv[i + 1] : undefined;
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
