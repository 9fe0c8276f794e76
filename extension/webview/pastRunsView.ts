/// <reference lib="dom" />
// The dashboard's Past runs section: the runs the daemon's store keeps (asked for over the stream with
// the Queries of history.ts), one tab per kind of run, and up to two of them overlaid on one step axis
// (loss, throughput, step time). Rows of finished runs are cached: they do not change.
import uPlot from 'uplot';
import { fmtNum, fmtSeconds } from './model';
import {
    describeRun, OVERLAY_FIELDS, OVERLAYS, overlay, overlayPoints, parseRuns, runName, runsOfKind, runTabs, runTooltip,
    toggleCompare, type PastRun, type Queries, type Row, type RunKind,
} from './history';
import { countAxis, valueAxis } from './plotAxes';
import { $, axisColors, h, plotWidth, seriesColor } from './dom';

/** How often the list is asked for again while the stream is open. */
export const PAST_REFRESH_MS = 10_000;

export class PastRunsView {
    runs: PastRun[] = [];
    private error: string | null = null;
    /** The runs picked for the overlay (at most two). */
    compare: string[] = [];
    /** The tab shown: training runs unless the user picked another kind. */
    kind: RunKind = 'train';
    /** Rows of finished runs (they do not change); running ones are asked for again. */
    private readonly rowsCache = new Map<string, Row[]>();
    /** The overlay's charts, by metric key. */
    readonly plots = new Map<string, { plot: uPlot; box: HTMLElement; points: number[] }>();

    constructor(private readonly queries: Queries) {}

    /** Clicks and Enter/Space on a tab or a run of the list. */
    start(): void {
        $('past-body').addEventListener('click', ev => this.onClick(ev));
        $('past-body').addEventListener('keydown', ev => {
            if (ev.key === 'Enter' || ev.key === ' ') {
                this.onClick(ev);
            }
        });
    }

    async refresh(): Promise<void> {
        try {
            this.runs = parseRuns(await this.queries.ask({ what: 'runs' }));
            this.error = null;
        } catch (e) {
            this.error = (e as Error).message;
        }
        this.renderList();
        await this.renderCompare();
    }

    private renderList(): void {
        const body = $('past-body');
        if (this.error) {
            body.replaceChildren(h('p', 'empty', `Past runs are not available: ${this.error}`));
            return;
        }
        if (this.runs.length === 0) {
            body.replaceChildren(h('p', 'empty', 'No run is stored yet: runs started through Deepdive are kept in metrics.db.'));
            return;
        }
        const now = Date.now() / 1000;
        const tabs = h('div', 'tabs');
        tabs.setAttribute('role', 'tablist');
        for (const t of runTabs(this.runs)) {
            const tab = h('button', 'tab', `${t.label} ${t.count}`);
            tab.type = 'button';
            tab.dataset.kind = t.kind;
            tab.setAttribute('role', 'tab');
            tab.setAttribute('aria-selected', String(t.kind === this.kind));
            tabs.append(tab);
        }
        const shown = runsOfKind(this.runs, this.kind);
        const ul = h('ul', 'past');
        if (shown.length === 0) {
            body.replaceChildren(tabs, h('p', 'empty', 'No run of this kind is stored.'));
            return;
        }
        for (const r of shown) {
            const li = h('li');
            li.dataset.run = r.run;
            const slot = this.compare.indexOf(r.run);
            li.setAttribute('aria-pressed', String(slot >= 0));
            if (slot >= 0) {
                li.dataset.slot = String(slot);
            }
            li.tabIndex = 0;
            li.title = `${describeRun(r, now)}\n${runTooltip(r)}`;
            li.append(h('span', 'mark'), h('span', `past-line outcome-${r.outcome ?? 'running'}`, describeRun(r, now)));
            ul.append(li);
        }
        body.replaceChildren(tabs, ul);
    }

    private onClick(ev: Event): void {
        const tab = (ev.target as HTMLElement).closest<HTMLElement>('button.tab');
        if (tab?.dataset.kind) {
            this.kind = tab.dataset.kind as RunKind;
            this.renderList();
            return;
        }
        const li = (ev.target as HTMLElement).closest<HTMLElement>('.past li');
        if (li?.dataset.run) {
            this.compare = toggleCompare(this.compare, li.dataset.run);
            this.renderList();
            void this.renderCompare();
        }
    }

    private async rowsOf(run: string): Promise<Row[]> {
        const cached = this.rowsCache.get(run);
        if (cached) {
            return cached;
        }
        const reply = await this.queries.ask({ what: 'run', run, fields: [...OVERLAY_FIELDS] });
        const rows = Array.isArray(reply.rows) ? (reply.rows as Row[]) : [];
        if (this.runs.find(r => r.run === run)?.outcome) {
            this.rowsCache.set(run, rows);
        }
        return rows;
    }

    private async renderCompare(): Promise<void> {
        const chosen = [...this.compare];
        const grid = $('compare');
        if (chosen.length === 0) {
            $('compare-title').textContent = '';
            for (const c of this.plots.values()) {
                c.plot.destroy();
            }
            this.plots.clear();
            grid.replaceChildren();
            return;
        }
        let rows: Row[][];
        try {
            rows = await Promise.all(chosen.map(run => this.rowsOf(run)));
        } catch (e) {
            $('compare-title').textContent = `Could not load the runs: ${(e as Error).message}`;
            return;
        }
        if (chosen.join() !== this.compare.join()) {
            return; // the selection changed while we waited; the newer call draws
        }
        const now = Date.now() / 1000;
        const names = chosen.map(id => {
            const r = this.runs.find(p => p.run === id);
            return r ? runName(r, now) : id;
        });
        $('compare-title').textContent = chosen.length === 2 ? `${names[0]} (blue) vs ${names[1]} (orange), by step` : `${names[0]}, by step: pick another run to overlay it`;
        for (const c of this.plots.values()) {
            c.plot.destroy();
        }
        this.plots.clear();
        const boxes: HTMLElement[] = [];
        const c = axisColors();
        for (const def of OVERLAYS) {
            const data = overlay(rows, def.key);
            const points = overlayPoints(data);
            if (points.every(n => n === 0)) {
                continue;
            }
            const box = h('div', 'chart');
            box.dataset.chart = `compare-${def.key}`;
            box.dataset.points = points.join(',');
            const head = h('div', 'chart-head');
            const title = h('span', 'chart-title', def.title);
            title.title = def.title;
            head.append(title);
            const plotEl = h('div', 'plot');
            box.append(head, plotEl);
            boxes.push(box);
            grid.replaceChildren(...boxes);
            const fmt = def.key === 'step_time_s' ? fmtSeconds : (v: number | null) => fmtNum(v);
            const plot = new uPlot({
                width: plotWidth(plotEl),
                height: 150,
                legend: { show: true, live: false },
                cursor: { drag: { x: false, y: false } },
                scales: { x: { time: false } },
                series: [
                    { label: 'step' },
                    ...names.map((name, i) => ({
                        label: name, stroke: seriesColor(i), width: 1.5, spanGaps: true, points: { show: false },
                    })),
                ],
                axes: [countAxis(c), valueAxis(c, 'y', 3, fmt)],
            }, data, plotEl);
            this.plots.set(def.key, { plot, box, points });
        }
        if (boxes.length === 0) {
            grid.replaceChildren(h('p', 'empty', 'These runs stored no step metrics (loss, throughput, step time).'));
        }
    }
}
