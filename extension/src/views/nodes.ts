// Tree-item building shared by the two views.
import { ThemeColor, ThemeIcon, TreeItem, TreeItemCollapsibleState } from 'vscode';
import { Commands } from '../common/constants';
import { notRunningLabel, ServerStatus } from '../common/status';

export interface MessageNode {
    message: string;
    icon: string;
    command?: string;
    tooltip?: string;
}

/** The single item a view shows while the daemon is not ready. */
export function statusMessage(status: ServerStatus): MessageNode {
    const busy = status.state === 'starting' || status.state === 'restarting';
    return {
        message: notRunningLabel(status),
        icon: busy ? 'sync~spin' : 'error',
        command: busy ? undefined : Commands.restartServer,
        tooltip: busy ? undefined : 'Click to restart the Deepdive server.',
    };
}

export function messageItem(node: MessageNode): TreeItem {
    const item = new TreeItem(node.message, TreeItemCollapsibleState.None);
    item.iconPath = new ThemeIcon(node.icon);
    item.tooltip = node.tooltip ?? node.message;
    if (node.command) {
        item.command = { command: node.command, title: node.message };
    }
    return item;
}

export function themeIcon(icon: string | undefined, color: string | undefined): ThemeIcon | undefined {
    return icon ? new ThemeIcon(icon, color ? new ThemeColor(color) : undefined) : undefined;
}
