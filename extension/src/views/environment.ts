// The Environment view: the daemon's doctor report as a tree, or why there is none.
import { Disposable, EventEmitter, TreeDataProvider, TreeItem, TreeItemCollapsibleState } from 'vscode';
import { errorMessage } from '../common/interpreter';
import { DeepdiveServer } from '../common/server';
import { DoctorReports } from '../report/doctor';
import { environmentNodes, EnvNode } from './environmentModel';
import { messageItem, MessageNode, statusMessage, themeIcon } from './nodes';

type Node = EnvNode | MessageNode;

export class EnvironmentView implements TreeDataProvider<Node>, Disposable {
    private readonly emitter = new EventEmitter<Node | undefined>();
    readonly onDidChangeTreeData = this.emitter.event;
    private error: string | undefined;
    private loading = false;
    private readonly subscriptions: Disposable[];

    constructor(
        private readonly server: DeepdiveServer,
        private readonly doctor: DoctorReports,
    ) {
        this.subscriptions = [
            server.onDidChangeStatus((s) => {
                this.emitter.fire(undefined);
                if (s.state === 'ready') {
                    void this.load(false);
                }
            }),
            doctor.onDidChange(() => {
                this.error = undefined;
                this.emitter.fire(undefined);
            }),
        ];
    }

    async load(refresh: boolean): Promise<void> {
        this.loading = true;
        this.emitter.fire(undefined);
        try {
            await this.doctor.fetch(refresh);
        } catch (err) {
            this.error = errorMessage(err);
        } finally {
            this.loading = false;
            this.emitter.fire(undefined);
        }
    }

    getChildren(node?: Node): Node[] {
        if (node) {
            return 'id' in node ? (node.children ?? []) : [];
        }
        const status = this.server.status;
        if (status.state !== 'ready') {
            return [statusMessage(status)];
        }
        const report = this.doctor.lastReport;
        const failed: Node[] = this.error ? [{ message: `Environment report failed: ${this.error}`, icon: 'error' }] : [];
        if (!report) {
            return this.loading ? [{ message: 'Probing the environment…', icon: 'sync~spin' }] : failed;
        }
        return [...failed, ...environmentNodes(report)];
    }

    getTreeItem(node: Node): TreeItem {
        if (!('id' in node)) {
            return messageItem(node);
        }
        const collapsible = node.children?.length ? TreeItemCollapsibleState.Collapsed : TreeItemCollapsibleState.None;
        const item = new TreeItem(node.label, collapsible);
        item.id = node.id;
        item.description = node.description;
        item.tooltip = node.tooltip;
        item.iconPath = themeIcon(node.icon, node.color);
        return item;
    }

    dispose(): void {
        Disposable.from(...this.subscriptions).dispose();
        this.emitter.dispose();
    }
}
