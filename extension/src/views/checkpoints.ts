// The Checkpoints view: each checkpoint store of the workspace (a run's checkpoint_dir) and its
// checkpoints, from `deepdive/checkpoints/list`; Verify, Resume This Run and Export… act on them.
// It refreshes on demand, when the daemon is ready, when a job ends and when a run saves a checkpoint.
import * as path from 'path';
import {
    Disposable, EventEmitter, Memento, ProgressLocation, TreeDataProvider, TreeItem, TreeItemCollapsibleState, Uri, window,
} from 'vscode';
import { guardCommand } from '../common/guard';
import { errorMessage } from '../common/interpreter';
import { DeepdiveServer } from '../common/server';
import { getWorkspaceFolders, registerCommand } from '../common/vscodeapi';
import { CheckpointList, CheckpointRun, Requests } from '../protocol';
import {
    CHECKPOINTS_VIEW, CheckpointCommands, EXTRA_FOLDERS_KEY, exportFileName, refreshesCheckpoints, RunNode, runChildren, runItem,
    runsOf, StepNode, stepItem, verifySummary,
} from './checkpointsModel';
import { JobsView } from './jobs';
import { messageItem, MessageNode, statusMessage, themeIcon } from './nodes';

type Node = RunNode | StepNode | MessageNode;

/** Job events come in bursts (a run saving every few steps): one list at most this often. */
const REFRESH_MS = 1000;

export class CheckpointsView implements TreeDataProvider<Node>, Disposable {
    private readonly emitter = new EventEmitter<Node | undefined>();
    readonly onDidChangeTreeData = this.emitter.event;
    private list: CheckpointList | undefined;
    private error: string | undefined;
    private timer: NodeJS.Timeout | undefined;
    private readonly subscriptions: Disposable[];

    constructor(private readonly server: DeepdiveServer, private readonly state: Memento, private readonly jobs: JobsView) {
        this.subscriptions = [
            server.onDidChangeStatus((s) => {
                this.emitter.fire(undefined);
                if (s.state === 'ready') {
                    void this.refresh();
                }
            }),
            server.onJobEvent((event) => {
                if (refreshesCheckpoints(event)) {
                    this.timer ??= setTimeout(() => {
                        this.timer = undefined;
                        void this.refresh();
                    }, REFRESH_MS);
                }
            }),
        ];
    }

    register(): Disposable[] {
        return [
            this,
            window.registerTreeDataProvider(CHECKPOINTS_VIEW, this),
            registerCommand(CheckpointCommands.refresh, () => this.refresh()),
            registerCommand(CheckpointCommands.addFolder, () => guardCommand('Add checkpoint folder', () => this.addFolder())),
            registerCommand(CheckpointCommands.verify, (node?: RunNode | StepNode) =>
                guardCommand('Verify checkpoints', () => this.verify(node))),
            registerCommand(CheckpointCommands.resume, (node?: RunNode | StepNode) =>
                guardCommand('Resume run', () => this.resume(node))),
            registerCommand(CheckpointCommands.export, (node?: RunNode | StepNode) =>
                guardCommand('Export checkpoint', () => this.export(node))),
        ];
    }

    async refresh(): Promise<CheckpointList | undefined> {
        try {
            this.list = await this.server.request(Requests.checkpointsList, { paths: this.extraFolders() });
            this.error = undefined;
        } catch (err) {
            this.error = errorMessage(err);
        }
        this.emitter.fire(undefined);
        return this.list;
    }

    getChildren(node?: Node): Node[] {
        if (node) {
            return 'run' in node && !('step' in node) ? runChildren(node) : [];
        }
        if (this.server.status.state !== 'ready') {
            return [statusMessage(this.server.status)];
        }
        if (this.error) {
            return [{ message: `Listing checkpoints failed: ${this.error}`, icon: 'error', command: CheckpointCommands.refresh }];
        }
        if (!this.list) {
            return [{ message: 'Looking for checkpoint stores…', icon: 'sync~spin' }];
        }
        if (this.list.runs.length === 0) {
            return [{
                message: 'No checkpoints yet: train with dd.setup(checkpoint_dir=...) or --checkpoint-dir',
                icon: 'info', command: CheckpointCommands.addFolder,
                tooltip: 'The workspace holds no checkpoint store (a folder with STORE.json). Click to add a folder outside it.',
            }];
        }
        return runsOf(this.list);
    }

    getTreeItem(node: Node): TreeItem {
        if (!('run' in node)) {
            return messageItem(node);
        }
        const m = 'step' in node ? stepItem(node.run, node.step) : runItem(node.run);
        const item = new TreeItem(m.label, m.collapsible ? TreeItemCollapsibleState.Collapsed : TreeItemCollapsibleState.None);
        item.id = 'step' in node ? `${node.run.path}#${node.step.name}` : node.run.path;
        item.description = m.description;
        item.tooltip = m.tooltip;
        item.iconPath = themeIcon(m.icon, m.color);
        item.contextValue = m.contextValue;
        return item;
    }

    // ---- actions ------------------------------------------------------------------------------

    private extraFolders(): string[] {
        return this.state.get<string[]>(EXTRA_FOLDERS_KEY, []);
    }

    private async addFolder(): Promise<void> {
        const picked = await window.showOpenDialog({
            title: 'Deepdive: a checkpoint store (the folder a run checkpoints to)', canSelectFolders: true,
            canSelectFiles: false, canSelectMany: false, openLabel: 'Add', defaultUri: getWorkspaceFolders()[0]?.uri,
        });
        if (!picked?.[0]) {
            return;
        }
        const folders = [...new Set([...this.extraFolders(), picked[0].fsPath])];
        await this.state.update(EXTRA_FOLDERS_KEY, folders);
        await this.refresh();
    }

    /** The node a command got from the view's context menu, or the only/picked run for the palette. */
    private async pickRun(node: RunNode | StepNode | undefined): Promise<CheckpointRun | undefined> {
        if (node?.run) {
            return node.run;
        }
        const runs = (this.list ?? (await this.refresh()))?.runs.filter((r) => !r.error) ?? [];
        if (runs.length <= 1) {
            return runs[0];
        }
        const picked = await window.showQuickPick(runs.map((r) => ({ label: r.name, description: runItem(r).description, run: r })),
            { title: 'Deepdive: which run?' });
        return picked?.run;
    }

    private async verify(node: RunNode | StepNode | undefined): Promise<void> {
        const run = await this.pickRun(node);
        if (!run) {
            return;
        }
        const step = node && 'step' in node ? node.step : undefined;
        const what = step ? `${run.name} ${step.name}` : run.name;
        const result = await window.withProgress(
            { location: ProgressLocation.Notification, title: `Deepdive: verifying ${what} (every chunk is decoded and hashed)…` },
            () => this.server.request(Requests.checkpointsVerify, { store: run.path, checkpoint: step?.name ?? null }),
        );
        await this.refresh();
        const message = `Deepdive: ${verifySummary(result)}`;
        void (result.ok ? window.showInformationMessage(message) : window.showErrorMessage(message));
    }

    private async resume(node: RunNode | StepNode | undefined): Promise<void> {
        const run = await this.pickRun(node);
        if (!run) {
            return;
        }
        let script: string | undefined;
        if (run.script) {
            const again = `Run ${path.basename(run.script)} ${run.args.join(' ')}`.trim();
            const other = 'Choose another script…';
            const picked = await window.showQuickPick([again, other], {
                title: `Deepdive: resume ${run.name} from its newest checkpoint that loads`,
                placeHolder: `The train job that saved here ran ${run.script}`,
            });
            if (!picked) {
                return;
            }
            script = picked === other ? await pickScript(run) : undefined;
            if (picked === other && !script) {
                return;
            }
        } else {
            script = await pickScript(run);
            if (!script) {
                return;
            }
        }
        const job = await this.server.request(Requests.checkpointsResume, { store: run.path, path: script ?? null });
        this.jobs.upsert(job);
        void window.showInformationMessage(`Deepdive: ${job.title} started (job ${job.id}); the Jobs view follows it.`);
    }

    private async export(node: RunNode | StepNode | undefined): Promise<void> {
        const run = await this.pickRun(node);
        if (!run) {
            return;
        }
        const step = node && 'step' in node ? node.step : run.checkpoints.find((c) => c.latest) ?? run.checkpoints.at(-1);
        if (!step) {
            throw new Error(`${run.name} holds no checkpoint to export`);
        }
        const part = await window.showQuickPick([
            { label: 'model', description: 'the model\'s state_dict (fits model.load_state_dict)', key: 'model' },
            { label: 'everything', description: 'every tensor of the checkpoint (optimizer too), by its path', key: undefined },
        ], { title: `Deepdive: export ${run.name} step ${step.step}` });
        if (!part) {
            return;
        }
        const target = await window.showSaveDialog({
            title: `Deepdive: export step ${step.step} to`, saveLabel: 'Export',
            defaultUri: Uri.file(path.join(path.dirname(run.path), exportFileName(run, step, part.key))),
            filters: { 'PyTorch state_dict': ['pt'], 'safetensors': ['safetensors'] },
        });
        if (!target) {
            return;
        }
        const result = await window.withProgress(
            { location: ProgressLocation.Notification, title: `Deepdive: exporting ${run.name} step ${step.step}…` },
            // the save dialog already asked about replacing an existing file
            () => this.server.request(Requests.checkpointsExport, {
                store: run.path, checkpoint: step.name, out: target.fsPath, key: part.key ?? null, force: true,
            }),
        );
        void window.showInformationMessage(
            `Deepdive: wrote ${result.path}: ${result.tensors} tensors (${result.format}) from ${result.checkpoint}`);
    }

    dispose(): void {
        clearTimeout(this.timer);
        Disposable.from(...this.subscriptions).dispose();
        this.emitter.dispose();
    }
}

async function pickScript(run: CheckpointRun): Promise<string | undefined> {
    const picked = await window.showOpenDialog({
        title: `Deepdive: the training script that checkpoints to ${run.name}`, canSelectMany: false, openLabel: 'Resume',
        filters: { Python: ['py'] }, defaultUri: getWorkspaceFolders()[0]?.uri,
    });
    return picked?.[0]?.fsPath;
}
