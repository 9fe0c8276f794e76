// Model compression from the editor: "Deepdive: Compress Model…" asks for the model file, the evaluation
// script, the steps (prune / reduce depth / distill / quantize; the number of blocks kept when depth is
// reduced) and the target CPU, then starts the daemon's `compress` job.
// A cancellable notification follows it (common/jobProgress: the job's progress events, the steps measured
// so far and what it does now; cancel = deepdive/jobs/cancel); the dashboard's Compression section shows the
// steps live from the hub. When the job ends the dashboard opens and the Markdown report is one click away.
// Refused in an untrusted workspace: the job imports the evaluation script and unpickles the model.
import * as path from 'path';
import { Disposable, QuickPickItem, Uri, window, workspace } from 'vscode';
import { Commands } from '../common/constants';
import { guardCommand } from '../common/guard';
import { showJobProgress } from '../common/jobProgress';
import { traceError, traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { executeCommand, getWorkspaceFolders, isTrusted, registerCommand } from '../common/vscodeapi';
import { CompressTarget, JobEvent, JobInfo, JobStartOf, Requests, Vocabularies } from '../protocol';
import { JobsView } from '../views/jobs';
import {
    checkLayers, checkSteps, COMPRESS_COMMAND, COMPRESS_JOB_KIND, compressOptions, CompressArgs, CompressJobOptions, defaultTarget,
    describeSteps, describeSummary, EVAL_HINT, isEvalScript, isModelFile, markdownOfReport, MODEL_EXTENSIONS,
    MAX_LAYERS, NOT_COMPRESSED, parseCompressArgs, rankCandidates, reportPaths, stepChoices, StepId, summaryOf,
} from './options';

const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);
const EXCLUDE = '**/{node_modules,.venv,venv,.git,__pycache__,.deepdive}/**';
const BROWSE = '$(folder-opened) Browse…';

/** What `deepdive.compressModel` resolves to (integration tests read it). */
export interface CompressOutcome {
    state: 'started' | 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    jobId?: string;
    job?: JobInfo;
    options?: CompressJobOptions;
    /** The JSON and Markdown reports of a succeeded job. */
    report?: string;
    markdown?: string;
    error?: string;
}

interface Tracked {
    job: JobInfo;
    options: CompressJobOptions;
    quiet: boolean;
    /** Resolves with the finished job, or undefined when the daemon went away first. */
    done: Promise<JobInfo | undefined>;
    end: (job: JobInfo | undefined) => void;
}

interface PathItem extends QuickPickItem {
    file?: string;
}

export class CompressController implements Disposable {
    private readonly tracked = new Map<string, Tracked>();
    /** Compress jobs that finished while a start request was in flight (their `finished` may beat the answer). */
    private readonly endedEarly = new Map<string, JobInfo>();
    private starting = 0;

    constructor(private readonly server: DeepdiveServer, private readonly jobs: JobsView) {}

    register(): Disposable[] {
        return [
            this,
            registerCommand(COMPRESS_COMMAND, (arg?: unknown) =>
                guardCommand('Compress model', () => this.compress(parseCompressArgs(arg)))),
            this.server.onJobEvent(e => this.onJobEvent(e)),
            this.server.onDidChangeStatus(s => {
                if (s.state !== 'ready') {
                    for (const t of [...this.tracked.values()]) {
                        this.tracked.delete(t.job.id);
                        t.end(undefined);  // the daemon's jobs end with it: say so instead of waiting forever
                    }
                }
            }),
        ];
    }

    dispose(): void {
        for (const t of this.tracked.values()) {
            t.end(undefined);
        }
        this.tracked.clear();
    }

    // ---- the command ----------------------------------------------------------------------------

    private async compress(a: CompressArgs): Promise<CompressOutcome> {
        if (!isTrusted()) {
            const why = 'Deepdive: compressing a model runs the evaluation script and loads the pickled model, and this '
                + 'workspace is not trusted (Manage Workspace Trust to allow it).';
            if (!a.quiet) {
                void window.showWarningMessage(why);
            }
            return { state: 'refused', error: why };
        }
        const model = await this.pickModel(a);
        if (!model) {
            return { state: 'dismissed' };
        }
        const script = await this.pickEval(a, model);
        if (!script) {
            return { state: 'dismissed' };
        }
        const evalText = await readScript(script);
        const steps = a.steps ?? (await pickSteps(evalText, a));
        if (!steps) {
            return { state: 'dismissed' };
        }
        const layers = steps.includes('layers') ? a.layers ?? (await pickLayers()) : undefined;
        if (steps.includes('layers') && layers === undefined) {
            return { state: 'dismissed' };
        }
        const target = a.target ?? (await pickTarget());
        if (!target) {
            return { state: 'dismissed' };
        }
        const options = compressOptions({
            model, eval: script, steps, target, prune: a.prune, layers, quantize: a.quantize, importance: a.importance,
        }, evalText);
        const file = path.basename(model);
        const params: JobStartOf<typeof COMPRESS_JOB_KIND> = {
            kind: COMPRESS_JOB_KIND,
            options,
            title: `Compress ${file}: ${describeSteps(options)}`,
            progress: false,  // the notification below has the cancel button and the steps
        };
        let job: JobInfo;
        this.starting++;
        try {
            job = await this.server.request(Requests.jobsStart, params);
        } finally {
            this.starting--;
        }
        traceInfo(`compress job ${job.id} started: ${JSON.stringify(options)}`);
        this.jobs.upsert(job);
        let end!: (job: JobInfo | undefined) => void;
        const done = new Promise<JobInfo | undefined>(resolve => (end = resolve));
        const t: Tracked = { job, options, quiet: a.quiet === true, done, end };
        const early = this.endedEarly.get(job.id) ?? (FINAL.has(job.state) ? job : undefined);
        this.endedEarly.delete(job.id);
        if (this.starting === 0) {
            this.endedEarly.clear();
        }
        if (early) {
            end(early);
        } else {
            this.tracked.set(job.id, t);
        }
        if (!t.quiet) {
            showJobProgress(this.server, job, `compressing ${file}`, j => this.jobs.upsert(j));
        }
        const finished = done.then(j => this.finished(t, j));
        if (!a.wait) {
            finished.catch(err => traceError(`compress job ${job.id}: reporting its end failed:`, err));
            return { state: 'started', jobId: job.id, job, options };
        }
        return finished;
    }

    private async pickModel(a: CompressArgs): Promise<string | undefined> {
        const given = a.modelUri ? Uri.parse(a.modelUri) : a.model ? Uri.file(resolveInWorkspace(a.model)) : undefined;
        if (given) {
            if (given.scheme !== 'file') {
                throw new Error('the model must be a file on disk: the compress job loads it from there');
            }
            if (!isModelFile(given.fsPath)) {
                throw new Error(`${path.basename(given.fsPath)} is not a model file (${MODEL_EXTENSIONS.map(e => `.${e}`).join(', ')})`);
            }
            return given.fsPath;
        }
        const found = await workspace.findFiles(`**/*.{${MODEL_EXTENSIONS.join(',')}}`, EXCLUDE, 1000);
        const files = rankCandidates(found.filter(u => u.scheme === 'file').map(u => u.fsPath), NOT_COMPRESSED);
        const picked = files.length ? await pickPath('Deepdive: Compress — the trained model', files,
            'A model saved with torch.save (.pt, .pth, .bin)') : BROWSE;
        if (picked !== BROWSE) {
            return picked;
        }
        const uris = await window.showOpenDialog({
            title: 'Deepdive: Compress — the trained model', canSelectMany: false, openLabel: 'Compress',
            filters: { 'PyTorch model': [...MODEL_EXTENSIONS] }, defaultUri: getWorkspaceFolders()[0]?.uri,
        });
        return uris?.[0]?.fsPath;
    }

    private async pickEval(a: CompressArgs, model: string): Promise<string | undefined> {
        if (a.eval) {
            const file = resolveInWorkspace(a.eval);
            if (!isEvalScript(file)) {
                throw new Error(`the evaluation script must be a .py file, got ${path.basename(file)}`);
            }
            return file;
        }
        const found = await workspace.findFiles('**/*.py', EXCLUDE, 3000);
        const files = rankCandidates(found.filter(u => u.scheme === 'file').map(u => u.fsPath), EVAL_HINT, model);
        const picked = files.length ? await pickPath('Deepdive: Compress — the evaluation script', files,
            'It defines evaluate(model) -> float, example_inputs(batch_size) and train_loader()') : BROWSE;
        if (picked !== BROWSE) {
            return picked;
        }
        const uris = await window.showOpenDialog({
            title: 'Deepdive: Compress — the evaluation script', canSelectMany: false, openLabel: 'Use',
            filters: { Python: ['py'] }, defaultUri: Uri.file(path.dirname(model)),
        });
        return uris?.[0]?.fsPath;
    }

    // ---- following the job ----------------------------------------------------------------------

    private onJobEvent(e: JobEvent): void {
        const t = this.tracked.get(e.jobId);
        if (e.type === 'finished' && e.job) {
            if (t) {
                this.tracked.delete(e.jobId);
                t.end(e.job);
            } else if (this.starting > 0 && e.job.kind === COMPRESS_JOB_KIND) {
                this.endedEarly.set(e.jobId, e.job);
            }
        }
    }

    private async finished(t: Tracked, job: JobInfo | undefined): Promise<CompressOutcome> {
        const file = path.basename(t.options.model);
        if (!job) {
            const why = 'the Deepdive daemon stopped while the compress job ran';
            if (!t.quiet) {
                void window.showWarningMessage(`Deepdive: lost track of compressing ${file}: ${why}.`);
            }
            return { state: 'lost', jobId: t.job.id, job: t.job, options: t.options, error: why };
        }
        const outcome: CompressOutcome = { state: job.state as CompressOutcome['state'], jobId: job.id, job, options: t.options };
        if (job.state === 'succeeded') {
            const paths = reportPaths(job.result);
            outcome.report = paths.json;
            outcome.markdown = (paths.json ? await markdownNamedBy(paths.json) : undefined) ?? paths.markdown;
        } else if (job.reason) {
            outcome.error = job.reason;
        }
        if (t.quiet) {
            return outcome;
        }
        const output = 'Show Output';
        if (job.state === 'succeeded') {
            void executeCommand(Commands.openDashboard);
            const summary = summaryOf(job.result);
            const open = 'Open Report';
            const buttons = outcome.markdown ? [open, output] : [output];
            const text = `Deepdive: compressed ${file}${summary ? `: ${describeSummary(summary)}` : ''}.`;
            void window.showInformationMessage(text, ...buttons).then(choice => {
                if (choice === open && outcome.markdown) {
                    void guardCommand('Open compression report', () => openReport(outcome.markdown!));
                } else if (choice === output) {
                    void executeCommand(Commands.showJobOutput, job.id);
                }
            });
        } else {
            const show = job.state === 'cancelled' ? window.showInformationMessage : window.showWarningMessage;
            void show(`Deepdive: compressing ${file} ${job.state}${job.reason ? `: ${job.reason}` : ''}.`, output).then(choice => {
                if (choice === output) {
                    void executeCommand(Commands.showJobOutput, job.id);
                }
            });
        }
        return outcome;
    }
}

function resolveInWorkspace(p: string): string {
    const root = getWorkspaceFolders()[0]?.uri.fsPath;
    return path.isAbsolute(p) || !root ? path.resolve(p) : path.join(root, p);
}

/** The script's text (saved first when it is open with changes: the job reads it from disk). */
async function readScript(file: string): Promise<string> {
    const doc = await workspace.openTextDocument(Uri.file(file));
    if (doc.isDirty) {
        await doc.save();
    }
    return doc.getText();
}

async function pickPath(title: string, files: string[], placeHolder: string): Promise<string | undefined> {
    const root = getWorkspaceFolders()[0]?.uri.fsPath;
    const items: PathItem[] = files.map(f => ({
        label: path.basename(f), description: root ? path.relative(root, path.dirname(f)) || '.' : path.dirname(f), file: f,
    }));
    items.push({ label: BROWSE, description: 'another file' });
    const picked = await window.showQuickPick(items, { title, placeHolder, ignoreFocusOut: true, matchOnDescription: true });
    return picked ? picked.file ?? BROWSE : undefined;
}

async function pickSteps(evalText: string, a: CompressArgs): Promise<StepId[] | undefined> {
    let choices = stepChoices(a.prune, a.quantize, a.layers);
    for (;;) {
        const picked = await window.showQuickPick(choices, {
            title: 'Deepdive: Compress — the steps (they run in this order)', canPickMany: true, ignoreFocusOut: true,
            placeHolder: 'Each step is measured: size, latency at batch 1 and 32, accuracy',
        });
        if (!picked) {
            return undefined;
        }
        const steps = picked.map(c => c.id);
        const problem = checkSteps(steps, evalText);
        if (!problem) {
            return steps;
        }
        void window.showWarningMessage(`Deepdive: ${problem}.`);
        choices = choices.map(c => ({ ...c, picked: steps.includes(c.id) }));
    }
}

/** The number of repeated blocks depth reduction keeps; undefined when the box is dismissed. */
async function pickLayers(): Promise<number | undefined> {
    const answer = await window.showInputBox({
        title: 'Deepdive: Compress — reduce depth: the number of repeated blocks to keep',
        prompt: `A whole number from 1 to ${MAX_LAYERS}, fewer than the model has (e.g. 2 of a BERT-mini's 4 encoder layers)`,
        placeHolder: 'N', ignoreFocusOut: true,
        validateInput: value => checkLayers(value),
    });
    return answer === undefined ? undefined : Number(answer.trim());
}

async function pickTarget(): Promise<CompressTarget | undefined> {
    const first = defaultTarget(process.arch);
    const items = [...Vocabularies.compressTargets].sort((x, y) => Number(y === first) - Number(x === first)).map(t => ({
        label: t, target: t,
        description: t === first ? 'this machine' : undefined,
        detail: t === 'x86' ? 'fbgemm / x86 int8 kernels (Intel, AMD)' : 'qnnpack int8 kernels (ARM: Graviton, Apple silicon, phones)',
    }));
    const picked = await window.showQuickPick(items, { title: 'Deepdive: Compress — the CPU the model will run on', ignoreFocusOut: true });
    return picked?.target;
}

/** The Markdown report the JSON report names; undefined when the JSON cannot be read. */
async function markdownNamedBy(json: string): Promise<string | undefined> {
    try {
        return markdownOfReport(Buffer.from(await workspace.fs.readFile(Uri.file(json))).toString('utf8'));
    } catch (err) {
        traceError(`reading the compression report ${json} failed:`, err);
        return undefined;
    }
}

async function openReport(file: string): Promise<void> {
    const uri = Uri.file(file);
    await workspace.fs.stat(uri);  // a missing report fails here with its path, not as an empty preview
    try {
        await executeCommand('markdown.showPreview', uri);
    } catch {
        await window.showTextDocument(uri);
    }
}
