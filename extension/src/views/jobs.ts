// The Jobs view: `deepdive/jobs/list`, newest first, kept live by `deepdive/jobs/event`.
import { Disposable, EventEmitter, TreeDataProvider, TreeItem, TreeItemCollapsibleState } from 'vscode';
import { Commands, JOB_LIST_LIMIT } from '../common/constants';
import { errorMessage } from '../common/interpreter';
import { DeepdiveServer } from '../common/server';
import { JobInfo, Requests } from '../protocol';
import { jobItem, JobsModel } from './jobsModel';
import { messageItem, MessageNode, statusMessage, themeIcon } from './nodes';

export interface JobNode {
    job: JobInfo;
}
type Node = JobNode | MessageNode;

/** Redraws at most this often while progress events stream in. */
const REDRAW_MS = 250;

export class JobsView implements TreeDataProvider<Node>, Disposable {
    private readonly emitter = new EventEmitter<Node | undefined>();
    readonly onDidChangeTreeData = this.emitter.event;
    readonly model = new JobsModel();
    private loaded = false;
    private error: string | undefined;
    private redrawTimer: NodeJS.Timeout | undefined;
    private readonly subscriptions: Disposable[];

    constructor(private readonly server: DeepdiveServer) {
        this.subscriptions = [
            server.onDidChangeStatus((s) => {
                this.emitter.fire(undefined);
                if (s.state === 'ready') {
                    void this.refresh();
                }
            }),
            server.onJobEvent((event) => {
                const result = this.model.apply(event);
                if (result === 'resync') {
                    void this.refresh();
                } else if (result === 'changed') {
                    this.scheduleRedraw();
                }
            }),
        ];
    }

    async refresh(): Promise<void> {
        try {
            const { jobs } = await this.server.request(Requests.jobsList, { limit: JOB_LIST_LIMIT });
            this.model.replaceAll(jobs);
            this.loaded = true;
            this.error = undefined;
        } catch (err) {
            this.error = errorMessage(err);
        }
        this.emitter.fire(undefined);
    }

    /** A job the client just started or cancelled: show it before its event arrives. */
    upsert(job: JobInfo): void {
        this.model.upsert(job);
        this.scheduleRedraw();
    }

    getChildren(node?: Node): Node[] {
        if (node) {
            return [];
        }
        if (this.server.status.state !== 'ready') {
            return [statusMessage(this.server.status)];
        }
        if (this.error) {
            return [{ message: `Listing jobs failed: ${this.error}`, icon: 'error', command: Commands.refreshJobs }];
        }
        if (!this.loaded) {
            return [{ message: 'Listing jobs…', icon: 'sync~spin' }];
        }
        const jobs = this.model.list();
        if (jobs.length === 0) {
            return [{ message: 'No jobs yet. Run a deep environment check.', icon: 'beaker', command: Commands.runDeepCheck }];
        }
        return jobs.map((job) => ({ job }));
    }

    getTreeItem(node: Node): TreeItem {
        if (!('job' in node)) {
            return messageItem(node);
        }
        const m = jobItem(node.job, Date.now() / 1000);
        const item = new TreeItem(m.label, TreeItemCollapsibleState.None);
        item.id = node.job.id;
        item.description = m.description;
        item.tooltip = m.tooltip;
        item.iconPath = themeIcon(m.icon, m.color);
        item.contextValue = m.contextValue;
        item.command = { command: Commands.showJobOutput, title: 'Show Job Output', arguments: [node] };
        return item;
    }

    private scheduleRedraw(): void {
        this.redrawTimer ??= setTimeout(() => {
            this.redrawTimer = undefined;
            this.emitter.fire(undefined);
        }, REDRAW_MS);
    }

    dispose(): void {
        clearTimeout(this.redrawTimer);
        Disposable.from(...this.subscriptions).dispose();
        this.emitter.dispose();
    }
}
