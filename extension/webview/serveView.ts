/// <reference lib="dom" />
// The dashboard's Serving section: a running `deepdive deploy serve` (serve.ts builds it from the `serve.stats`
// events). Hidden until the first event arrives. The figures of the recent window (requests/s, queue delay and
// latency p50/p99, the model's run time per batch, the mean batch, the queue), requests/s over time and latency
// p50/p99 over time (uPlot, with the dashboard's axes), and the batch-size histogram (SVG bars). No inline style:
// colours are dashboard.css classes.
import uPlot from 'uplot';
import {
    applyServe, currentServer, describeBatching, describeFailures, emptyServe, fmtMs, fmtRate, serversByRecency, type Served,
} from './serve';
import { align } from './ring';
import { timeAxis, valueAxis } from './plotAxes';
import { $, axisColors, h, onResize, plotWidth, revealSection, seriesColor } from './dom';

const SVG = 'http://www.w3.org/2000/svg';
const PLOT_HEIGHT = 150;

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, cls?: string): SVGElementTagNameMap[K] {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) {
        e.setAttribute(k, String(v));
    }
    if (cls) {
        e.setAttribute('class', cls);
    }
    return e;
}

interface Plot {
    plot: uPlot;
    server: string;
}

export class ServeView {
    private readonly state = emptyServe();
    private chosen: string | null = null;
    private serversKey = '';
    private dirty = false;
    private resized = false;
    private ratePlot: Plot | null = null;
    private latencyPlot: Plot | null = null;
    private bars = 0;

    constructor(private readonly schedule: () => void) {}

    /** Feeds one /stream message; asks for a frame when a server's figures changed. */
    apply(msg: unknown): void {
        if (applyServe(this.state, msg).size > 0) {
            this.dirty = true;
            this.schedule();
        }
    }

    start(): void {
        $('serve-server').addEventListener('change', ev => {
            this.chosen = (ev.target as HTMLSelectElement).value || null;
            this.dirty = true;
            this.schedule();
        });
        onResize(() => {
            this.dirty = true;
            this.resized = true;
            this.schedule();
        });
        $('serve-panel').hidden = true;
    }

    /** Scrolls the section into view and holds it there while the page fills (the editor asks once a server is up). */
    reveal(): void {
        revealSection($('serve-panel'));
    }

    /** Called from the page's animation frame. */
    render(): void {
        if (!this.dirty) {
            return;
        }
        this.dirty = false;
        const servers = serversByRecency(this.state);
        const s = currentServer(this.state, this.chosen);
        $('serve-panel').hidden = s === null;
        if (!s) {
            return;
        }
        const key = servers.map(x => x.key).sort().join('\n');
        if (key !== this.serversKey) {
            this.serversKey = key;
            const select = $('serve-server') as HTMLSelectElement;
            select.replaceChildren(...servers.map(x => {
                const o = h('option', undefined, `${x.model} · ${x.url}`);
                o.value = x.key;
                return o;
            }));
            select.hidden = servers.length < 2;
        }
        ($('serve-server') as HTMLSelectElement).value = s.key;
        const f = s.figures;
        $('serve-meta').textContent = [`${s.model} (${s.form || 'eager'})`, s.url,
            `${f.instances} instance${f.instances === 1 ? '' : 's'}`, describeBatching(f.config)].filter(Boolean).join(' · ');
        const failures = describeFailures(f.outcomes);
        const warn = $('serve-failures');
        warn.textContent = failures ? `Not answered in the last ${f.windowS.toFixed(0)} s: ${failures}` : '';
        warn.hidden = !failures;
        this.renderFigures(s);
        const resized = this.resized;
        this.resized = false;
        this.ratePlot = this.renderSeries('serve-rate', this.ratePlot, s, resized, [{ label: 'requests/s', ring: s.rate }],
            v => (v === null ? '' : fmtRate(v).replace('/s', '')));
        this.latencyPlot = this.renderSeries('serve-latency', this.latencyPlot, s, resized,
            [{ label: 'p50', ring: s.latencyP50 }, { label: 'p99', ring: s.latencyP99 }], v => (v === null ? '' : fmtMs(v)));
        this.renderHistogram(s);
    }

    private renderFigures(s: Served): void {
        const f = s.figures;
        const last = s.rate.last();
        const rows: [string, string, string][] = [
            ['requests/s', last ? fmtRate(last.v) : '—', `${fmtRate(f.windowRate)} over ${f.windowS.toFixed(0)} s`],
            ['latency', `p50 ${fmtMs(f.latency.p50)}`, `p99 ${fmtMs(f.latency.p99)}`],
            ['queue delay', `p50 ${fmtMs(f.queueDelay.p50)}`, `p99 ${fmtMs(f.queueDelay.p99)}`],
            ['model run / batch', `p50 ${fmtMs(f.run.p50)}`, `p99 ${fmtMs(f.run.p99)}`],
            ['batches', f.meanBatch === null ? '—' : `mean ${f.meanBatch.toFixed(1)} rows`, `${f.batches} in ${f.windowS.toFixed(0)} s`],
            ['queue', `${f.queueDepth} waiting`, `${f.running} batch${f.running === 1 ? '' : 'es'} running`],
            ['answered', String(f.totals.ok ?? 0), describeFailures(f.totals) || 'no failures since start'],
        ];
        const table = h('table', 'tune-table serve-table');
        const tbody = h('tbody');
        for (const [name, a, b] of rows) {
            const tr = h('tr');
            tr.dataset.figure = name;
            tr.append(h('th', undefined, name), h('td', 'num', a), h('td', 'num', b));
            tbody.append(tr);
        }
        table.append(tbody);
        $('serve-figures').replaceChildren(table);
    }

    private renderSeries(id: string, current: Plot | null, s: Served, resized: boolean,
        series: { label: string; ring: Served['rate'] }[], fmt: (v: number | null) => string): Plot | null {
        const box = $(id);
        const points = series[0].ring.pointCount();
        box.dataset.points = String(points);
        const plotEl = box.querySelector<HTMLElement>('.plot')!;
        box.querySelector<HTMLElement>('.empty')!.hidden = points > 0;
        if (points === 0 || (current && current.server !== s.key)) {
            current?.plot.destroy();
            current = null;
            if (points === 0) {
                return null;
            }
        }
        const data = align(series.map(x => x.ring)) as uPlot.AlignedData;
        if (current) {
            if (resized) {
                current.plot.setSize({ width: plotWidth(plotEl), height: PLOT_HEIGHT });
            }
            current.plot.setData(data);
            return current;
        }
        const c = axisColors();
        const plot = new uPlot({
            width: plotWidth(plotEl),
            height: PLOT_HEIGHT,
            legend: { show: series.length > 1, live: false },
            cursor: { drag: { x: false, y: false } },
            scales: { x: { time: true }, y: { range: (_u, lo, hi) => [0, Math.max(hi, lo + 1e-9) * 1.1] } },
            series: [{}, ...series.map((x, i) => ({
                label: x.label, stroke: seriesColor(i), width: 1.5, spanGaps: true, points: { show: false },
            }))],
            axes: [timeAxis(c), valueAxis(c, 'y', 3, fmt)],
        }, data, plotEl);
        return { plot, server: s.key };
    }

    // -- the batch-size histogram of the recent window -----------------------------------------------------
    private renderHistogram(s: Served): void {
        const box = $('serve-histogram');
        const hist = s.figures.histogram;
        box.querySelector<HTMLElement>('.empty')!.hidden = hist.length > 0;
        $('serve-histogram-window').textContent = `batches in the last ${s.figures.windowS.toFixed(0)} s`;
        const holder = box.querySelector<HTMLElement>('.serve-svg')!;
        this.bars = hist.length;
        box.dataset.bars = String(hist.length);
        if (hist.length === 0) {
            holder.replaceChildren();
            return;
        }
        const width = Math.max(160, holder.clientWidth || 360);
        const height = 130;
        const labelH = 16;
        const top = 14;
        const most = Math.max(...hist.map(([, n]) => n));
        const slot = width / hist.length;
        const barW = Math.max(2, Math.min(48, slot * 0.8));
        const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' }, 'serve-bars');
        const title = svg('title', {});
        title.textContent = `Batches by size: ${hist.map(([rows, n]) => `${rows} rows × ${n}`).join(', ')}`;
        root.append(title);
        const every = Math.max(1, Math.ceil(28 / slot));  // a size label at most every 28 px
        hist.forEach(([rows, n], i) => {
            const x = i * slot + (slot - barW) / 2;
            const barH = Math.max(1, (n / most) * (height - labelH - top));
            const rect = svg('rect', { x: x.toFixed(2), y: (height - labelH - barH).toFixed(2), width: barW.toFixed(2), height: barH.toFixed(2) }, 'sbar');
            rect.dataset.rows = String(rows);
            rect.dataset.count = String(n);
            const tip = svg('title', {});
            tip.textContent = `${n} batch${n === 1 ? '' : 'es'} of ${rows} row${rows === 1 ? '' : 's'}`;
            rect.append(tip);
            root.append(rect);
            if (i % every === 0) {
                const label = svg('text', { x: (x + barW / 2).toFixed(2), y: height - 3, 'text-anchor': 'middle' }, 'size-label');
                label.textContent = String(rows);
                root.append(label);
            }
            if (n === most) {
                const value = svg('text', { x: (x + barW / 2).toFixed(2), y: Math.max(10, height - labelH - barH - 3).toFixed(2), 'text-anchor': 'middle' }, 'bar-value');
                value.textContent = String(n);
                root.append(value);
            }
        });
        holder.replaceChildren(root);
    }

    /** Test hooks, merged into window.__deepdiveDashboard. */
    hooks(): Record<string, unknown> {
        const shown = (): Served | null => currentServer(this.state, this.chosen);
        return {
            /** Servers heard from, newest first. */
            serveServers: () => serversByRecency(this.state).map(s => ({ key: s.key, model: s.model, form: s.form, url: s.url })),
            /** The shown server's latest figures and the points in its charts, or null. */
            serveShown: () => {
                const s = shown();
                return s ? {
                    model: s.model, url: s.url, ratePoints: s.rate.pointCount(), latencyPoints: s.latencyP99.pointCount(),
                    lastRate: s.rate.last()?.v ?? null, windowRate: s.figures.windowRate, histogram: s.figures.histogram,
                    latency: s.figures.latency, queueDelay: s.figures.queueDelay, totals: s.figures.totals,
                } : null;
            },
            /** Bars drawn in the batch-size histogram. */
            serveBars: () => this.bars,
            /** Whether the section is shown. */
            serveVisible: () => !$('serve-panel').hidden,
        };
    }
}
