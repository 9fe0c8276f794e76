// Training from the editor: "Deepdive: Train…" (and a "Train" CodeLens on a script that uses
// deepdive.engine or follows the generated-program contract) asks for the processes, precision,
// gradient compression, checkpoints and the script's arguments, then starts the daemon's `train` job:
// a progress notification carries the Cancel button, the Jobs view lists it, and its telemetry reaches
// the sidebar dashboard and the status bar like any job's. The choices are remembered per script.
import * as os from 'os';
import * as path from 'path';
import {
    CancellationToken,
    CodeLens,
    CodeLensProvider,
    Disposable,
    EventEmitter,
    languages,
    Memento,
    QuickPickItem,
    Range,
    TextDocument,
    window,
    workspace,
} from 'vscode';
import { Commands, CONFIG_SECTION } from '../common/constants';
import { guardCommand } from '../common/guard';
import { scriptToRun } from '../common/pickScript';
import { showJobProgress } from '../common/jobProgress';
import { traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { executeCommand, getConfiguration, registerCommand } from '../common/vscodeapi';
import { JobEvent, JobInfo, JobStartOf, Requests, Vocabularies } from '../protocol';
import { JobsView } from '../views/jobs';
import { GradCompression, parseTrainArgs, Precision, splitArgs, TrainArgs, trainLensLine, trainOptions, trainTitle } from './args';

export const TRAIN_JOB_KIND = 'train';
const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'lost']);
/** workspaceState key of the choices per script (the Diagnose command reads the script's arguments there). */
export const MEMORY_KEY = 'deepdive.train.lastChoices';

/** What `deepdive.train` resolves to (the integration tests read it). */
export interface TrainOutcome {
    state: 'started' | 'succeeded' | 'failed' | 'cancelled' | 'lost' | 'refused' | 'dismissed';
    jobId?: string;
    job?: JobInfo;
    path?: string;
    error?: string;
}

const PRECISION_HELP: Record<Precision, string> = {
    auto: 'the script\'s dd.setup() choice; "auto" there: bf16 where the hardware has it, else fp32',
    fp32: 'full precision',
    bf16: 'bfloat16 autocast (GPUs of compute capability 8.0+, CPUs with native bf16)',
    fp16: 'float16 autocast with loss scaling (older GPUs)',
};
const COMPRESSION_HELP: Record<GradCompression, string> = {
    auto: 'the script\'s choice; "auto" there: measured in the first steps, off where it does not help',
    none: 'plain allreduce',
    fp16: 'gradients sent as float16',
    bf16: 'gradients sent as bfloat16',
    powersgd: 'low-rank gradients (PowerSGD)',
    topk: 'the largest gradients only (top-k)',
};

export class TrainController implements CodeLensProvider, Disposable {
    private readonly started = new Map<string, { quiet: boolean; path: string }>();
    private readonly waiters = new Map<string, (job: JobInfo) => void>();
    private readonly lensEmitter = new EventEmitter<void>();
    readonly onDidChangeCodeLenses = this.lensEmitter.event;

    constructor(private readonly server: DeepdiveServer, private readonly jobs: JobsView, private readonly memory: Memento) {}

    register(): Disposable[] {
        const python = [{ language: 'python', scheme: 'file' }];
        return [
            this,
            registerCommand(Commands.train, (arg?: unknown) => guardCommand('Train', () => this.train(parseTrainArgs(arg)))),
            languages.registerCodeLensProvider(python, this),
            this.server.onJobEvent(e => this.onJobEvent(e)),
            workspace.onDidChangeConfiguration(e => {
                if (e.affectsConfiguration(`${CONFIG_SECTION}.train.codeLens`)) {
                    this.lensEmitter.fire();
                }
            }),
        ];
    }

    dispose(): void {
        this.lensEmitter.dispose();
    }

    private async train(a: TrainArgs): Promise<TrainOutcome> {
        const picked = await scriptToRun(a, 'train', 'training');
        if (!('uri' in picked)) {
            return picked;
        }
        const { uri } = picked;
        const remembered = this.remembered(uri.fsPath);
        const chosen = await this.ask(a, remembered, path.basename(uri.fsPath));
        if (!chosen) {
            return { state: 'dismissed' };
        }
        await this.memory.update(MEMORY_KEY, { ...this.memory.get<Record<string, TrainArgs>>(MEMORY_KEY, {}), [uri.fsPath]: chosen });
        const file = path.basename(uri.fsPath);
        const params: JobStartOf<typeof TRAIN_JOB_KIND> = {
            kind: TRAIN_JOB_KIND, options: trainOptions(uri.fsPath, chosen), title: trainTitle(file, chosen), progress: false,
        };
        const job = await this.server.request(Requests.jobsStart, params);
        traceInfo(`train job ${job.id} started for ${uri.fsPath}: ${JSON.stringify(params.options)}`);
        this.jobs.upsert(job);
        if (!a.quiet) {
            showJobProgress(this.server, job, `training ${file}`, j => this.jobs.upsert(j));
        }
        this.started.set(job.id, { quiet: a.quiet === true, path: uri.fsPath });
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
        return { state: end.state as TrainOutcome['state'], jobId: end.id, job: end, path: uri.fsPath };
    }

    /** Each choice not given in the arguments, asked in turn; undefined when the user dismisses one. */
    private async ask(a: TrainArgs, last: TrainArgs, file: string): Promise<TrainArgs | undefined> {
        const out: TrainArgs = { ...a };
        if (out.nproc === undefined) {
            const cpus = Math.max(1, os.cpus().length);
            const counts = [...new Set([1, 2, 4, 8, cpus, last.nproc ?? 1])].filter(n => n <= Math.max(cpus, last.nproc ?? 1)).sort((x, y) => x - y);
            const items = counts.map(n => ({ label: String(n), description: n === 1 ? 'one process' : `DDP over ${n} processes (torchrun)`, n }));
            const picked = await pick(items, `Deepdive: Train ${file} — processes`, String(last.nproc ?? 1));
            if (!picked) {
                return undefined;
            }
            out.nproc = picked.n;
        }
        if (out.precision === undefined) {
            const items = Vocabularies.trainPrecisions.map(p => ({ label: p, description: PRECISION_HELP[p], p }));
            const picked = await pick(items, `Deepdive: Train ${file} — precision`, last.precision ?? 'auto');
            if (!picked) {
                return undefined;
            }
            out.precision = picked.p;
        }
        if (out.gradCompression === undefined && (out.nproc ?? 1) > 1) {
            const items = Vocabularies.gradCompressions.map(c => ({ label: c, description: COMPRESSION_HELP[c], c }));
            const picked = await pick(items, `Deepdive: Train ${file} — gradient compression`, last.gradCompression ?? 'auto');
            if (!picked) {
                return undefined;
            }
            out.gradCompression = picked.c;
        }
        if (out.checkpointDir === undefined) {
            const folder = path.join('.deepdive', 'checkpoints', path.parse(file).name);
            const items = [
                { label: 'No checkpoints', description: 'unless the script sets checkpoint_dir itself', dir: '', fresh: false },
                { label: `Checkpoints in ${folder}`, description: 'every epoch and on Cancel; resumes from the newest', dir: folder, fresh: false },
                { label: `Checkpoints in ${folder}, start fresh`, description: 'ignore the checkpoints already there', dir: folder, fresh: true },
            ];
            const lastLabel = last.checkpointDir ? (last.fresh ? items[2].label : items[1].label) : items[0].label;
            const picked = await pick(items, `Deepdive: Train ${file} — checkpoints`, lastLabel);
            if (!picked) {
                return undefined;
            }
            out.checkpointDir = picked.dir;
            out.fresh = picked.fresh || undefined;
        }
        if (out.args === undefined) {
            const typed = await window.showInputBox({
                title: `Deepdive: Train ${file} — the script's arguments`, ignoreFocusOut: true,
                prompt: 'Arguments for the script (e.g. --epochs 5); quotes group words, nothing is expanded',
                value: (last.args ?? []).map(quoteArg).join(' '),
                validateInput: v => {
                    try {
                        splitArgs(v);
                        return undefined;
                    } catch (err) {
                        return (err as Error).message;
                    }
                },
            });
            if (typed === undefined) {
                return undefined;
            }
            out.args = splitArgs(typed);
        }
        delete out.path;
        delete out.uri;
        return out;
    }

    private remembered(script: string): TrainArgs {
        return this.memory.get<Record<string, TrainArgs>>(MEMORY_KEY, {})[script] ?? {};
    }

    private onJobEvent(e: JobEvent): void {
        if (e.type === 'finished' && e.job && this.started.has(e.jobId)) {
            this.finished(e.job);
        }
    }

    private finished(job: JobInfo): void {
        const mine = this.started.get(job.id);
        this.started.delete(job.id);
        const waiter = this.waiters.get(job.id);
        this.waiters.delete(job.id);
        waiter?.(job);
        if (!mine || mine.quiet) {
            return;
        }
        const file = path.basename(mine.path);
        const output = 'Show Output';
        const show = job.state === 'succeeded' ? window.showInformationMessage : window.showWarningMessage;
        void show(`Deepdive: training ${file} ${job.state}${job.reason ? `: ${job.reason}` : ''}.`, output).then(choice => {
            if (choice === output) {
                void executeCommand(Commands.showJobOutput, job.id);
            }
        });
    }

    provideCodeLenses(doc: TextDocument, _token: CancellationToken): CodeLens[] {
        if (getConfiguration(CONFIG_SECTION, doc.uri).get<boolean>('train.codeLens', true) === false) {
            return [];
        }
        const line = trainLensLine(doc.getText());
        if (line === undefined) {
            return [];
        }
        return [new CodeLens(new Range(line, 0, line, 0), {
            title: '$(play) Train…', command: Commands.train, arguments: [{ uri: doc.uri.toString() }],
            tooltip: 'Run this script as a Deepdive training job: processes, precision, compression, checkpoints, arguments',
        })];
    }
}

async function pick<T extends QuickPickItem>(items: T[], title: string, current: string): Promise<T | undefined> {
    const sorted = [...items].sort((x, y) => Number(y.label === current) - Number(x.label === current));
    if (sorted[0]?.label === current) {
        sorted[0] = { ...sorted[0], detail: 'last used' };
    }
    return window.showQuickPick(sorted, { title, ignoreFocusOut: true });
}

function quoteArg(a: string): string {
    return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, '\'\\\'\'')}'`;
}
