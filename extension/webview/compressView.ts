/// <reference lib="dom" />
// The dashboard's Compression section: the models `deepdive compress` streams (compress.ts builds them from
// the events), one shown at a time: what runs now, the overall result, a table of the steps (params, size,
// latency p50/p95 at batch 1 and 32, accuracy, against the original) and grouped horizontal bars (size,
// batch-1 latency, accuracy of each step relative to the original) drawn as SVG elements. No inline style:
// colours come from dashboard.css classes, geometry from SVG attributes, so the page's CSP holds.
import {
    applyCompress, barGroups, BAR_METRICS, currentModel, describeLive, describeSummary, emptyCompress, fmtAccuracy,
    fmtCount, fmtLatency, fmtMs, fmtSizeMb, fmtVsOriginal, modelsByRecency, pairedNote, ratios, stepsOf, summaryOf,
    type BarMetric, type CompressedModel,
} from './compress';
import { $, h, onResize, tableHead } from './dom';

const SVG = 'http://www.w3.org/2000/svg';
const LABELS: Record<BarMetric, string> = { size: 'size', latency: 'latency (batch 1, p50)', accuracy: 'accuracy' };

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

function barValue(metric: BarMetric, value: number | null): string {
    return metric === 'size' ? `${fmtSizeMb(value)} MB` : metric === 'latency' ? `${fmtMs(value)} ms` : fmtAccuracy(value);
}

export class CompressView {
    private readonly state = emptyCompress();
    private changed = new Set<string>();
    private chosen: string | null = null;
    private shown: string | null = null;
    private modelsKey = '';
    private dirty = false;
    private barsDrawn = 0;

    constructor(private readonly schedule: () => void) {}

    /** Feeds one /stream message; asks for a frame when a model changed. */
    apply(msg: unknown): void {
        const now = applyCompress(this.state, msg);
        if (now.size > 0) {
            now.forEach(n => this.changed.add(n));
            this.dirty = true;
            this.schedule();
        }
    }

    start(): void {
        $('compress-model').addEventListener('change', ev => {
            this.chosen = (ev.target as HTMLSelectElement).value || null;
            this.dirty = true;
            this.schedule();
        });
        onResize(() => {
            this.dirty = true;
            this.schedule();
        });
        this.renderEmpty();
    }

    /** Called from the page's animation frame: redraws what changed since the last frame. */
    render(): void {
        if (!this.dirty) {
            return;
        }
        this.dirty = false;
        const changed = this.changed;
        this.changed = new Set();
        const models = modelsByRecency(this.state);
        const key = models.map(m => m.run).sort().join('\n');
        const model = currentModel(this.state, this.chosen);
        if (key !== this.modelsKey) {
            this.modelsKey = key;
            this.renderPicker(models, model);
        }
        if (!model) {
            this.renderEmpty();
            return;
        }
        if (model.run !== this.shown || changed.has(model.run) || changed.size === 0) {
            if (model.run !== this.shown) {
                ($('compress-model') as HTMLSelectElement).value = model.run;
            }
            this.shown = model.run;
            this.renderModel(model);
        }
    }

    private renderPicker(models: CompressedModel[], current: CompressedModel | null): void {
        const select = $('compress-model') as HTMLSelectElement;
        select.replaceChildren(...models.map(m => {
            const o = h('option', undefined, m.name);
            o.value = m.run;
            return o;
        }));
        select.hidden = models.length < 2;
        if (current) {
            select.value = current.run;
        }
    }

    private renderEmpty(): void {
        $('compress-body').hidden = true;
        $('compress-meta').textContent = '';
        $('compress-empty').hidden = false;
        this.barsDrawn = 0;
    }

    private renderModel(m: CompressedModel): void {
        $('compress-empty').hidden = true;
        $('compress-body').hidden = false;
        const r = m.report;
        const bits = [m.path ?? m.name];
        if (r) {
            if (r.target) {
                bits.push(`target ${r.target}`);
            }
            if (r.threads) {
                bits.push(`${r.threads} CPU thread${r.threads === 1 ? '' : 's'}`);
            }
            if (r.eval) {
                bits.push(`evaluated by ${r.eval.split(/[\\/]/).pop()}`);
            }
        } else {
            bits.push(m.live ? 'running' : 'no report yet');
        }
        $('compress-meta').textContent = bits.join(' · ');
        const live = $('compress-live');
        live.dataset.step = m.live?.step ?? '';
        live.replaceChildren();
        if (m.live) {
            live.append(h('span', 'compress-spinner'), h('strong', undefined, 'Now: '), document.createTextNode(describeLive(m.live)));
        }
        live.hidden = !m.live;
        const summary = summaryOf(m);
        const sumEl = $('compress-summary');
        sumEl.replaceChildren();
        if (summary) {
            sumEl.append(h('strong', undefined, r ? 'Overall: ' : 'So far: '), document.createTextNode(describeSummary(summary)));
            if (r?.outputs.markdown) {
                sumEl.append(h('span', 'hint', `report: ${r.outputs.markdown}`));
            }
        }
        sumEl.hidden = !summary;
        this.renderTable(m);
        this.renderChart(m);
    }

    // -- the steps table ----------------------------------------------------------------------------
    private renderTable(m: CompressedModel): void {
        const rows = stepsOf(m);
        const vs = ratios(m);
        const table = h('table', 'tune-table compress-table');
        const thead = tableHead(['step', 'params', 'size (MB)', 'batch 1 p50 / p95 (ms)', 'batch 32 p50 / p95 (ms)', 'accuracy', 'vs original']);
        const tbody = h('tbody');
        rows.forEach((row, i) => {
            const tr = h('tr');
            tr.dataset.step = row.step;
            if (m.live?.step === row.step && m.live.phase !== 'measured') {
                tr.classList.add('current');
            }
            tr.append(h('td', 'step', row.step), h('td', 'num', fmtCount(row.params)), h('td', 'num', fmtSizeMb(row.sizeMb)),
                h('td', 'num', fmtLatency(row.b1)), h('td', 'num', fmtLatency(row.b32)), h('td', 'num', fmtAccuracy(row.accuracy)),
                h('td', 'vs', fmtVsOriginal(vs[i])));
            tbody.append(tr);
        });
        if (m.live && m.live.phase !== 'measured' && !m.steps.has(m.live.step)) {
            const tr = h('tr', 'pending');
            tr.dataset.step = m.live.step;
            const td = h('td', 'note', `${m.live.phase || 'running'}…`);
            td.colSpan = 6;
            tr.append(h('td', 'step', m.live.step), td);
            tbody.append(tr);
        }
        table.append(thead, tbody);
        const note = pairedNote(vs);
        $('compress-table').replaceChildren(table, ...(note ? [h('p', 'hint compress-note', note)] : []));
    }

    // -- grouped horizontal bars, relative to the original ----------------------------------------------
    private renderChart(m: CompressedModel): void {
        const box = $('compress-chart');
        const holder = box.querySelector<HTMLElement>('.compress-svg')!;
        const { groups, max } = barGroups(m);
        const drawn = groups.filter(g => g.bars.some(b => b.rel !== null));
        box.querySelector<HTMLElement>('.empty')!.hidden = drawn.length > 0;
        if (drawn.length === 0) {
            holder.replaceChildren();
            this.barsDrawn = 0;
            box.dataset.bars = '0';
            return;
        }
        const width = Math.max(260, holder.clientWidth || 420);
        const barH = 9;
        const gap = 2;
        const groupGap = 12;
        const label = 72;
        const valueW = 120;
        const top = 4;
        const groupH = BAR_METRICS.length * (barH + gap) - gap;
        const height = top + drawn.length * (groupH + groupGap);
        const area = Math.max(40, width - label - valueW);
        const x = (rel: number) => label + (rel / max) * area;
        const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' }, 'compress-bars');
        const title = svg('title', {});
        title.textContent = 'Each step relative to the original model: size, batch-1 latency and accuracy';
        root.append(title);
        let bars = 0;
        drawn.forEach((g, gi) => {
            const y0 = top + gi * (groupH + groupGap);
            const name = svg('text', { x: 0, y: y0 + groupH / 2 + 4 }, 'step-label');
            name.textContent = g.step;
            root.append(name);
            g.bars.forEach((b, bi) => {
                const y = y0 + bi * (barH + gap);
                if (b.rel === null) {
                    const none = svg('text', { x: label + 2, y: y + barH - 1 }, 'bar-value');
                    none.textContent = `${LABELS[b.metric]}: —`;
                    root.append(none);
                    return;
                }
                const w = Math.max(1, x(Math.min(b.rel, max)) - label);
                const rect = svg('rect', { x: label, y, width: w.toFixed(1), height: barH, rx: 2 },
                    `cbar bar-${b.metric}${b.clipped ? ' clipped' : ''}`);
                rect.dataset.step = g.step;
                rect.dataset.metric = b.metric;
                rect.dataset.rel = b.rel.toFixed(4);
                const tip = svg('title', {});
                tip.textContent = `${g.step} ${LABELS[b.metric]}: ${barValue(b.metric, b.value)} (${(100 * b.rel).toFixed(1)} % of the original)`;
                rect.append(tip);
                root.append(rect);
                const text = svg('text', { x: label + w + 4, y: y + barH - 1 }, 'bar-value');
                text.textContent = `${b.clipped ? '▸ ' : ''}${(100 * b.rel).toFixed(0)} % · ${barValue(b.metric, b.value)}`;
                root.append(text);
                bars++;
            });
        });
        // the original's 100 % line
        const ref = x(1);
        root.append(svg('line', { x1: ref, x2: ref, y1: 0, y2: height }, 'ref-line'));
        holder.replaceChildren(root);
        this.barsDrawn = bars;
        box.dataset.bars = String(bars);
    }

    /** Test hooks, merged into window.__deepdiveDashboard. */
    hooks(): Record<string, unknown> {
        const model = (run?: string) => (run ? this.state.models.get(run) ?? this.state.models.get(`compress-${run}`) ?? null
            : currentModel(this.state, this.chosen));
        return {
            /** Models seen, newest first. */
            compressModels: () => modelsByRecency(this.state).map(m => ({
                run: m.run, model: m.name, path: m.path, steps: m.steps.size, done: m.report !== null,
                live: m.live ? describeLive(m.live) : null,
            })),
            /** The rows of a model (run id or model stem; default: the shown one), in pipeline order, with the ratios. */
            compressSteps: (run?: string) => {
                const m = model(run);
                if (!m) {
                    return [];
                }
                const vs = ratios(m);
                return stepsOf(m).map((r, i) => ({
                    step: r.step, params: r.params, sizeMb: r.sizeMb, b1: r.b1, b32: r.b32, accuracy: r.accuracy,
                    size: vs[i].size, speedupB1: vs[i].speedupB1, accuracyPoints: vs[i].accuracyPoints,
                }));
            },
            /** What the shown (or named) model's pipeline does now, or null. */
            compressLive: (run?: string) => model(run)?.live ?? null,
            /** The report's summary of the shown (or named) model, or null. */
            compressReport: (run?: string) => model(run)?.report ?? null,
            /** Bars in the shown model's chart. */
            compressBars: () => this.barsDrawn,
            /** The run the Compression section shows. */
            compressShown: () => this.shown,
        };
    }
}
