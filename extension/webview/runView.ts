/// <reference lib="dom" />
// The dashboard's run sections: Runs seen (the live runs, newest first, one of them current), Current
// run (a uPlot chart per metric of charts.ts, or the sentence that says why a chart has no data) and
// Verdict (the bottleneck, its evidence and the fix). dashboard.ts calls these from its one
// requestAnimationFrame when a run changed or another run was chosen.
import uPlot from 'uplot';
import {
    align, baseName, fmtAgo, fmtNum, runsByRecency, throughputLabel, type RunState, type State,
} from './model';
import { CHARTS, chartHasData, chartNote, noDataReason, type ChartDef } from './charts';
import { timeAxis, valueAxis } from './plotAxes';
import { $, axisColors, h, plotWidth, seriesColor } from './dom';

/** A chart of the current run, drawn (plot) or saying why it has no data (why). */
export interface ChartBox { plot: uPlot | null; box: HTMLElement; title: HTMLElement; latest: HTMLElement; note: HTMLElement; why: HTMLElement; count: number; keys: string }

function makePlot(def: ChartDef, el: HTMLElement, data: uPlot.AlignedData): uPlot {
    const c = axisColors();
    const scales = new Set(def.series.map(s => s.scale ?? 'y'));
    return new uPlot({
        width: plotWidth(el),
        height: 150,
        legend: { show: def.series.length > 1, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        series: [
            {},
            ...def.series.map((s, i) => ({
                label: s.label, scale: s.scale ?? 'y', stroke: seriesColor(i), width: 1.5,
                spanGaps: true, points: { show: false },
            })),
        ],
        axes: [
            timeAxis(c),
            ...(scales.has('y') ? [valueAxis(c, 'y', 3, def.fmt)] : []),
            ...(scales.has('n') ? [valueAxis(c, 'n', scales.has('y') ? 1 : 3, v => fmtNum(v), !scales.has('y'))] : []),
        ],
    }, data, el);
}

function machineFacts(state: State): { gpus: number; gpuReason: string | null } {
    return { gpus: state.gpus.size, gpuReason: state.gpuReason };
}

function evidenceValue(x: unknown): string {
    if (typeof x === 'number') {
        return fmtNum(x);
    }
    if (Array.isArray(x)) {
        return x.length ? x.map(evidenceValue).join(', ') : 'none';
    }
    if (typeof x === 'object' && x !== null) {
        return Object.keys(x).length ? JSON.stringify(x) : 'none';
    }
    return String(x);
}

export class RunView {
    /** The current run's charts, by the id of their definition in charts.ts. */
    readonly charts = new Map<string, ChartBox>();

    /** One hidden box per chart definition, shown once a run is current. */
    start(): void {
        const grid = $('charts');
        for (const def of CHARTS) {
            const box = h('div', 'chart');
            box.dataset.chart = def.id;
            const head = h('div', 'chart-head');
            const latest = h('span', 'latest');
            const title = h('span', 'chart-title', def.title);
            title.title = def.title;
            head.append(title, latest);
            const note = h('p', 'chart-note');
            const why = h('p', 'empty chart-why');
            const plotBox = h('div', 'plot');
            box.append(head, note, why, plotBox);
            box.hidden = true;
            grid.append(box);
            this.charts.set(def.id, { plot: null, box, title, latest, note, why, count: 0, keys: '' });
        }
    }

    renderRuns(state: State, current: RunState | null): void {
        const list = $('runs-body');
        const runs = runsByRecency(state);
        if (runs.length === 0) {
            list.replaceChildren(h('p', 'empty', 'No run has reported yet: start one with `deepdive train SCRIPT`.'));
            return;
        }
        const now = Date.now() / 1000;
        const items = runs.map(r => {
            const li = h('li', r === current ? 'run current' : 'run');
            li.dataset.run = r.id;
            li.append(h('span', 'run-id', r.id),
                h('span', 'run-step', r.lastStep === null ? 'no step yet' : `step ${r.lastStep}`),
                h('span', 'run-ago', fmtAgo(r.lastT, now)));
            li.tabIndex = 0;
            return li;
        });
        const ul = h('ul', 'runs');
        ul.append(...items);
        list.replaceChildren(ul);
    }

    renderRun(state: State, run: RunState): void {
        const named = run.setup?.script ? `${baseName(run.setup.script)} (${run.id})` : run.id;
        $('run-title').textContent = `Current run: ${named}`;
        $('run-title').title = run.setup?.script ?? run.id;
        const bits = [run.lastStep === null ? 'no step yet' : `step ${run.lastStep}`, `${run.samples} samples`];
        if (run.ranks.size > 1) {
            bits.push(`${run.ranks.size} ranks (charts: rank ${run.rank})`);
        }
        if (run.precision) {
            bits.push(run.precision);
        }
        if (run.dropped) {
            bits.push(`${run.dropped} samples dropped by the producer`);
        }
        $('run-meta').textContent = bits.join(' · ');
        $('run-empty').hidden = true;
        for (const def of CHARTS) {
            const chart = this.charts.get(def.id)!;
            const rings = def.series.map(s => run.series.get(s.key));
            const present = def.series.filter((_s, i) => rings[i] && rings[i].pointCount() > 0);
            chart.box.hidden = false;
            const note = chartNote(def, run, machineFacts(state));
            chart.note.textContent = note ?? '';
            chart.note.hidden = note === null;
            if (!chartHasData(def, run)) {  // says why, instead of an empty box or a flat line of zeros
                chart.why.textContent = noDataReason(def, run, machineFacts(state));
                chart.why.hidden = false;
                chart.box.dataset.empty = 'true';
                chart.latest.textContent = '';
                chart.count = 0;
                chart.box.dataset.points = '0';
                chart.plot?.destroy();
                chart.plot = null;
                continue;
            }
            chart.why.hidden = true;
            delete chart.box.dataset.empty;
            const keys = present.map(s => s.key).join(',');
            if (chart.plot && chart.keys !== keys) {
                chart.plot.destroy();
                chart.plot = null;
            }
            chart.keys = keys;
            const shown: ChartDef = { ...def, series: present };
            const data = align(present.map(s => run.series.get(s.key)!)) as uPlot.AlignedData;
            chart.count = present.reduce((n, s) => n + run.series.get(s.key)!.pointCount(), 0);
            chart.box.dataset.points = String(chart.count);
            if (def.id === 'throughput') {  // the engine's one figure: its window and ranks, as the status bar says them
                chart.title.textContent = `Throughput (${throughputLabel(run)})`;
                chart.title.title = chart.title.textContent;
            }
            chart.latest.textContent = def.series
                .map((s, i) => (rings[i]?.last() ? `${def.series.length > 1 ? s.label + ' ' : ''}${def.fmt(rings[i].last()!.v)}` : ''))
                .filter(Boolean).join(' · ');
            const plotEl = chart.box.querySelector<HTMLElement>('.plot')!;
            if (!chart.plot) {
                chart.plot = makePlot(shown, plotEl, data);
            } else {
                chart.plot.setData(data);
            }
        }
        this.renderVerdict(run);
    }

    renderNoRun(): void {
        $('run-title').textContent = 'Current run';
        $('run-meta').textContent = '';
        $('run-empty').hidden = false;
        for (const chart of this.charts.values()) {
            chart.box.hidden = true;
        }
        this.renderVerdict(null);
    }

    private renderVerdict(run: RunState | null): void {
        const box = $('verdict-body');
        const v = run?.verdict;
        if (!v) {
            box.dataset.kind = '';
            box.replaceChildren(h('p', 'empty', run ? 'No verdict yet: it needs a few timed steps.' : 'No run yet.'));
            return;
        }
        box.dataset.kind = v.kind;
        const kind = h('span', 'kind', v.kind);
        const sentence = h('p', 'sentence', v.sentence);
        const fix = h('p', 'fix');
        fix.append(h('strong', undefined, 'Fix: '), document.createTextNode(v.fix || '—'));
        box.replaceChildren(kind, sentence, fix);
        if (v.evidence) {
            const ev = Object.entries(v.evidence).filter(([, x]) => x !== null && x !== undefined)
                .map(([k, x]) => `${k} ${evidenceValue(x)}`).join(' · ');
            if (ev) {
                box.append(h('p', 'evidence', ev));
            }
        }
    }
}
