// The status bar item: the daemon's state at a glance, and while it is ready the live figure that
// matters (a training run's throughput, else GPU utilisation). A click opens the report, the
// dashboard (live figure) or restarts.
import { Disposable, StatusBarItem, ThemeColor } from 'vscode';
import type { TelemetrySummary } from '../protocol';
import { Commands, DISPLAY_NAME } from './constants';
import { presentStatus, presentTelemetry, ServerStatus, TELEMETRY_STALE_MS } from './status';
import { createStatusBarItem } from './vscodeapi';

export class DeepdiveStatusBar implements Disposable {
    private readonly item: StatusBarItem;
    private status: ServerStatus;
    private summary: TelemetrySummary | undefined;
    private staleTimer: NodeJS.Timeout | undefined;

    constructor(initial: ServerStatus) {
        this.item = createStatusBarItem('status', 100);
        this.item.name = DISPLAY_NAME;
        this.status = initial;
        this.render();
        this.item.show();
    }

    update(status: ServerStatus): void {
        this.status = status;
        if (status.state !== 'ready') {
            this.summary = undefined;
        }
        this.render();
    }

    updateTelemetry(summary: TelemetrySummary): void {
        this.summary = summary;
        this.render();
        // Fall back to the plain status when summaries stop coming.
        clearTimeout(this.staleTimer);
        this.staleTimer = setTimeout(() => this.render(), TELEMETRY_STALE_MS + 100);
    }

    private render(): void {
        const p = presentStatus(this.status);
        const live = this.status.state === 'ready' ? presentTelemetry(this.summary, Date.now()) : undefined;
        this.item.text = live ? `${p.text} · ${live.text}` : p.text;
        this.item.tooltip = live ? `${live.tooltip}\n\n${p.tooltip}` : p.tooltip;
        this.item.command = live ? Commands.openDashboard : p.command;
        this.item.accessibilityInformation = { label: `Deepdive: ${this.status.state}${live ? `, ${live.text.replace(/\$\([^)]*\) /, '')}` : ''}` };
        this.item.backgroundColor = p.isError ? new ThemeColor('statusBarItem.errorBackground') : undefined;
    }

    dispose(): void {
        clearTimeout(this.staleTimer);
        this.item.dispose();
    }
}
