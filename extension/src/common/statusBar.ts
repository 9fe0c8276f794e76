// The status bar item: the daemon's state at a glance; a click opens the report (or restarts).
import { Disposable, StatusBarItem, ThemeColor } from 'vscode';
import { DISPLAY_NAME } from './constants';
import { presentStatus, ServerStatus } from './status';
import { createStatusBarItem } from './vscodeapi';

export class DeepdiveStatusBar implements Disposable {
    private readonly item: StatusBarItem;

    constructor(initial: ServerStatus) {
        this.item = createStatusBarItem('status', 100);
        this.item.name = DISPLAY_NAME;
        this.update(initial);
        this.item.show();
    }

    update(status: ServerStatus): void {
        const p = presentStatus(status);
        this.item.text = p.text;
        this.item.tooltip = p.tooltip;
        this.item.command = p.command;
        this.item.accessibilityInformation = { label: `Deepdive: ${status.state}` };
        this.item.backgroundColor = p.isError ? new ThemeColor('statusBarItem.errorBackground') : undefined;
    }

    dispose(): void {
        this.item.dispose();
    }
}
