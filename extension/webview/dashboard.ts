/// <reference lib="dom" />
// The dashboard page: connects to the hub's /stream websocket, keeps bounded series (model.ts) and renders
// Devices, Host, Current run (uPlot charts), Verdict and Runs seen. All DOM work happens in one
// requestAnimationFrame per frame, so a 10 Hz stream costs at most one redraw per frame.
// No inline script or style: this file and dashboard.css are the whole page (CSP with a nonce works).
import uPlot from 'uplot';
import {
    align, apply, backoffDelay, baseName, connectionLabel, currentRun, emptyState, fmtAgo, fmtMib, fmtNum, fmtPct,
    fmtRate, fmtSeconds, noChange, runsByRecency, streamUrl, throughputLabel,
    type Change, type Config, type ConnState, type GpuState, type Ring, type RunState,
} from './model';
import {
    describeRun, OVERLAY_FIELDS, OVERLAYS, overlay, overlayPoints, parseRuns, Queries, runName, runsOfKind, runTabs,
    runTooltip, toggleCompare, type PastRun, type Row, type RunKind,
} from './history';
import { CHARTS, chartHasData, chartNote, noDataReason, type ChartDef } from './charts';
import { countAxis, labelBoxes, timeAxis, valueAxis } from './plotAxes';
import { compressForRuns } from './compress';
import { CompressView } from './compressView';
import { forRuns } from './tune';
import { TuneView } from './tuneView';

declare global {
    interface Window {
        DEEPDIVE_CONFIG?: Config;
        __deepdiveDashboard?: unknown;
    }
}

const state = emptyState();
let pending: Change = noChange();
let chosenRun: string | null = null;
let conn: ConnState = 'connecting';
let lastError: string | null = null;
let retryAt = 0;
let frameRequested = false;
let shownRun: string | null = null;
const tune = new TuneView(schedule);
const compress = new CompressView(schedule);

const $ = (id: string): HTMLElement => {
    const el = document.getElementById(id);
    if (!el) {
        throw new Error(`the page has no #${id}`);
    }
    return el;
};

function h<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
    const el = document.createElement(tag);
    if (cls) {
        el.className = cls;
    }
    if (text !== undefined) {
        el.textContent = text;
    }
    return el;
}

// ---------------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------------
let ws: WebSocket | null = null;
let attempt = 0;
let opens = 0;

function connect(): void {
    const url = streamUrl(window.location, window.DEEPDIVE_CONFIG);
    conn = attempt === 0 ? 'connecting' : 'reconnecting';
    schedule();
    let socket: WebSocket;
    try {
        socket = new WebSocket(url);
    } catch (e) {
        lastError = String(e);
        retry();
        return;
    }
    ws = socket;
    socket.onopen = () => {
        opens++;
        attempt = 0;
        conn = 'open';
        lastError = null;
        schedule();
        void refreshPast();
    };
    socket.onmessage = ev => {
        if (typeof ev.data !== 'string') {
            return;
        }
        let msg: unknown;
        try {
            msg = JSON.parse(ev.data);
        } catch {
            return;
        }
        if (queries.handle(msg)) {
            return;
        }
        tune.apply(msg);
        compress.apply(msg);
        const forRunPanels = forRuns(compressForRuns(msg));
        if (forRunPanels !== null) {
            apply(state, forRunPanels, pending);
        }
        schedule();
    };
    socket.onclose = ev => {
        if (ws !== socket) {
            return;
        }
        ws = null;
        queries.failAll('the connection to the daemon closed');
        lastError = ev.code === 1000 ? null : `code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`;
        retry();
    };
}

function retry(): void {
    const delay = backoffDelay(attempt++);
    conn = 'reconnecting';
    retryAt = Date.now() + delay;
    setTimeout(connect, delay);
    schedule();
}

// ---------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------
function schedule(): void {
    if (!frameRequested) {
        frameRequested = true;
        requestAnimationFrame(render);
    }
}

function render(): void {
    frameRequested = false;
    const change = pending;
    pending = noChange();
    renderConnection();
    if (change.machine) {
        renderDevices();
        renderHost();
    }
    const run = currentRun(state, chosenRun);
    if (change.runs.size > 0 || (run?.id ?? null) !== shownRun) {
        renderRuns(run);
        if (run && (change.runs.has(run.id) || run.id !== shownRun)) {
            renderRun(run);
        } else if (!run) {
            renderNoRun();
        }
        shownRun = run?.id ?? null;
    }
    tune.render();
    compress.render();
    $('dropped').textContent = state.dropped > 0 ? `${state.dropped} entries lost (this page read too slowly)` : '';
}

// keeps "retrying in N s" ticking while disconnected
setInterval(() => {
    if (conn !== 'open') {
        schedule();
    }
}, 500);

function renderConnection(): void {
    const el = $('conn');
    el.dataset.state = conn;
    el.textContent = connectionLabel(conn, conn === 'reconnecting' ? Math.max(0, retryAt - Date.now()) : null, lastError);
}

// -- sparklines (devices, host): a canvas each, redrawn in place ------------------------------------
function cssVar(name: string, fallback: string): string {
    return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

function drawSpark(canvas: HTMLCanvasElement, ring: Ring | undefined, max: number | null): void {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 120;
    const hgt = canvas.clientHeight || 28;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
        canvas.width = Math.round(w * dpr);
        canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) {
        return;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    if (!ring || ring.length < 2) {
        return;
    }
    const vs = ring.values();
    let hi = max ?? 0;
    if (max === null) {
        for (const v of vs) {
            if (v !== null && v > hi) {
                hi = v;
            }
        }
    }
    hi = hi || 1;
    const n = vs.length;
    ctx.strokeStyle = cssVar('--dd-accent', '#3794ff');
    ctx.lineWidth = 1.25;
    ctx.beginPath();
    let pen = false;
    vs.forEach((v, i) => {
        if (v === null) {
            pen = false;
            return;
        }
        const x = (i / (n - 1)) * (w - 2) + 1;
        const y = hgt - 1 - (Math.min(v, hi) / hi) * (hgt - 2);
        if (pen) {
            ctx.lineTo(x, y);
        } else {
            ctx.moveTo(x, y);
            pen = true;
        }
    });
    ctx.stroke();
}

interface Metric {
    key: string;
    label: string;
    fmt: (v: number | null) => string;
    max: (g: GpuState) => number | null;
}

const GPU_METRICS: Metric[] = [
    { key: 'util_gpu_pct', label: 'util', fmt: fmtPct, max: () => 100 },
    { key: 'mem_used_mib', label: 'memory', fmt: fmtMib, max: g => g.memTotalMib },
    { key: 'power_w', label: 'power', fmt: v => (v === null ? '—' : `${fmtNum(v)} W`), max: g => g.powerLimitW },
    { key: 'temp_c', label: 'temp', fmt: v => (v === null ? '—' : `${fmtNum(v)} °C`), max: () => 100 },
    { key: 'clock_sm_mhz', label: 'SM clock', fmt: v => (v === null ? '—' : `${fmtNum(v, 4)} MHz`), max: () => null },
    { key: 'clock_mem_mhz', label: 'mem clock', fmt: v => (v === null ? '—' : `${fmtNum(v, 4)} MHz`), max: () => null },
];

const gpuCards = new Map<number, { root: HTMLElement; title: HTMLElement; note: HTMLElement; rows: Map<string, { value: HTMLElement; bar: HTMLElement; canvas: HTMLCanvasElement }> }>();

function renderDevices(): void {
    const body = $('devices-body');
    if (state.gpus.size === 0) {
        gpuCards.clear();
        body.replaceChildren(h('p', 'empty', state.gpuReason ? `No GPUs: ${state.gpuReason}` : 'No GPU data.'));
        body.dataset.gpus = '0';
        return;
    }
    if (body.dataset.gpus === '0' || body.querySelector('.empty')) {
        body.replaceChildren();
    }
    body.dataset.gpus = String(state.gpus.size);
    for (const [index, card] of gpuCards) {
        if (!state.gpus.has(index)) {
            card.root.remove();
            gpuCards.delete(index);
        }
    }
    for (const gpu of state.gpus.values()) {
        let card = gpuCards.get(gpu.index);
        if (!card) {
            const root = h('div', 'card gpu');
            const title = h('div', 'card-title');
            const note = h('div', 'warn');
            root.append(title, note);
            const rows = new Map<string, { value: HTMLElement; bar: HTMLElement; canvas: HTMLCanvasElement }>();
            for (const m of GPU_METRICS) {
                const row = h('div', 'metric');
                const value = h('span', 'value');
                const gauge = h('div', 'gauge');
                const bar = h('div', 'bar');
                gauge.append(bar);
                const canvas = h('canvas', 'spark');
                row.append(h('span', 'label', m.label), value, gauge, canvas);
                root.append(row);
                rows.set(m.key, { value, bar, canvas });
            }
            body.append(root);
            card = { root, title, note, rows };
            gpuCards.set(gpu.index, card);
        }
        card.title.textContent = `GPU ${gpu.index} · ${gpu.name}`;
        card.note.textContent = gpu.throttle.length ? `throttled: ${gpu.throttle.join(', ')}` : '';
        for (const m of GPU_METRICS) {
            const row = card.rows.get(m.key)!;
            const ring = gpu.series.get(m.key);
            const last = ring?.values().at(-1) ?? null;
            const max = m.max(gpu);
            row.value.textContent = m.fmt(last) + (m.key === 'mem_used_mib' && max ? ` / ${fmtMib(max)}` : '');
            row.bar.style.width = last !== null && max ? `${Math.min(100, (100 * last) / max)}%` : '0%';
            row.bar.parentElement!.hidden = !max;
            drawSpark(row.canvas, ring, max);
        }
    }
}

const HOST_METRICS: { key: string; label: string; fmt: (v: number | null) => string; max: number | null }[] = [
    { key: 'cpu_pct', label: 'CPU', fmt: fmtPct, max: 100 },
    { key: 'mem_pct', label: 'memory', fmt: fmtPct, max: 100 },
    { key: 'disk_read_b_s', label: 'disk read', fmt: fmtRate, max: null },
    { key: 'disk_write_b_s', label: 'disk write', fmt: fmtRate, max: null },
    { key: 'net_rx_b_s', label: 'net in', fmt: fmtRate, max: null },
    { key: 'net_tx_b_s', label: 'net out', fmt: fmtRate, max: null },
];
const hostRows = new Map<string, { value: HTMLElement; canvas: HTMLCanvasElement }>();

function renderHost(): void {
    const body = $('host-body');
    if (hostRows.size === 0) {
        body.replaceChildren();
        for (const m of HOST_METRICS) {
            const row = h('div', 'metric');
            const value = h('span', 'value');
            const canvas = h('canvas', 'spark');
            row.append(h('span', 'label', m.label), value, canvas);
            body.append(row);
            hostRows.set(m.key, { value, canvas });
        }
    }
    for (const m of HOST_METRICS) {
        const row = hostRows.get(m.key)!;
        const ring = state.host.get(m.key);
        let text = m.fmt(ring?.values().at(-1) ?? null);
        if (m.key === 'mem_pct') {
            text += ` (${fmtMib(state.host.get('mem_used_mib')?.values().at(-1) ?? null)} of ${fmtMib(state.hostInfo.memTotalMib)})`;
        } else if (m.key === 'cpu_pct' && state.hostInfo.cpus) {
            text += ` of ${state.hostInfo.cpus} CPUs`;
        }
        row.value.textContent = text;
        drawSpark(row.canvas, ring, m.max);
    }
}

// -- runs ---------------------------------------------------------------------------------------------
function renderRuns(current: RunState | null): void {
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

function onRunClick(ev: Event): void {
    const li = (ev.target as HTMLElement).closest<HTMLElement>('li.run');
    if (li?.dataset.run) {
        chosenRun = li.dataset.run;
        pending.runs.add(chosenRun);
        schedule();
    }
}

const COLORS = ['--dd-accent', '--dd-series2', '--dd-series3'];
const COLOR_FALLBACKS = ['#3794ff', '#f0a050', '#89d185'];
interface ChartBox { plot: uPlot | null; box: HTMLElement; title: HTMLElement; latest: HTMLElement; note: HTMLElement; why: HTMLElement; count: number; keys: string }
const charts = new Map<string, ChartBox>();

function chartBoxes(): void {
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
        charts.set(def.id, { plot: null, box, title, latest, note, why, count: 0, keys: '' });
    }
}

function makePlot(def: ChartDef, el: HTMLElement, data: uPlot.AlignedData): uPlot {
    const c = { fg: cssVar('--dd-fg', '#cccccc'), grid: cssVar('--dd-grid', 'rgba(128,128,128,0.2)') };
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
                label: s.label, scale: s.scale ?? 'y', stroke: cssVar(COLORS[i], COLOR_FALLBACKS[i]), width: 1.5,
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

/** A chart's width: its container's, never wider (a sidebar is narrow), never unreadably narrow. */
function plotWidth(el: HTMLElement): number {
    return Math.max(160, Math.floor(el.clientWidth || 400));
}

function renderRun(run: RunState): void {
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
        const chart = charts.get(def.id)!;
        const rings = def.series.map(s => run.series.get(s.key));
        const present = def.series.filter((_s, i) => rings[i] && rings[i].pointCount() > 0);
        chart.box.hidden = false;
        const note = chartNote(def, run, machineFacts());
        chart.note.textContent = note ?? '';
        chart.note.hidden = note === null;
        if (!chartHasData(def, run)) {  // says why, instead of an empty box or a flat line of zeros
            chart.why.textContent = noDataReason(def, run, machineFacts());
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
    renderVerdict(run);
}

function machineFacts(): { gpus: number; gpuReason: string | null } {
    return { gpus: state.gpus.size, gpuReason: state.gpuReason };
}

function renderNoRun(): void {
    $('run-title').textContent = 'Current run';
    $('run-meta').textContent = '';
    $('run-empty').hidden = false;
    for (const chart of charts.values()) {
        chart.box.hidden = true;
    }
    renderVerdict(null);
}

function renderVerdict(run: RunState | null): void {
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

// resize: uPlot needs explicit sizes
let resizeTimer = 0;
window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(() => {
        for (const c of [...charts.values(), ...comparePlots.values()]) {
            const el = c.box.querySelector<HTMLElement>('.plot');
            if (c.plot && el) {
                c.plot.setSize({ width: plotWidth(el), height: 150 });
            }
        }
        pending.machine = true;
        schedule();
    }, 100);
});

// ---------------------------------------------------------------------------------------------------
// Past runs: the list from the daemon's store, and two of them overlaid on one step axis
// ---------------------------------------------------------------------------------------------------
const queries = new Queries(text => {
    if (ws && ws.readyState === WebSocket.OPEN) {
        ws.send(text);
        return true;
    }
    return false;
});
let pastRuns: PastRun[] = [];
let pastError: string | null = null;
let compare: string[] = [];
/** The past-runs tab shown: training runs unless the user picked another kind. */
let pastKind: RunKind = 'train';
/** Rows of finished runs (they do not change); running ones are asked for again. */
const rowsCache = new Map<string, Row[]>();
const comparePlots = new Map<string, { plot: uPlot; box: HTMLElement; points: number[] }>();
const PAST_REFRESH_MS = 10_000;

async function refreshPast(): Promise<void> {
    try {
        pastRuns = parseRuns(await queries.ask({ what: 'runs' }));
        pastError = null;
    } catch (e) {
        pastError = (e as Error).message;
    }
    renderPast();
    await renderCompare();
}

setInterval(() => {
    if (conn === 'open') {
        void refreshPast();
    }
}, PAST_REFRESH_MS);

function renderPast(): void {
    const body = $('past-body');
    if (pastError) {
        body.replaceChildren(h('p', 'empty', `Past runs are not available: ${pastError}`));
        return;
    }
    if (pastRuns.length === 0) {
        body.replaceChildren(h('p', 'empty', 'No run is stored yet: runs started through Deepdive are kept in metrics.db.'));
        return;
    }
    const now = Date.now() / 1000;
    const tabs = h('div', 'tabs');
    tabs.setAttribute('role', 'tablist');
    for (const t of runTabs(pastRuns)) {
        const tab = h('button', 'tab', `${t.label} ${t.count}`);
        tab.type = 'button';
        tab.dataset.kind = t.kind;
        tab.setAttribute('role', 'tab');
        tab.setAttribute('aria-selected', String(t.kind === pastKind));
        tabs.append(tab);
    }
    const shown = runsOfKind(pastRuns, pastKind);
    const ul = h('ul', 'past');
    if (shown.length === 0) {
        body.replaceChildren(tabs, h('p', 'empty', 'No run of this kind is stored.'));
        return;
    }
    for (const r of shown) {
        const li = h('li');
        li.dataset.run = r.run;
        const slot = compare.indexOf(r.run);
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

function onPastClick(ev: Event): void {
    const tab = (ev.target as HTMLElement).closest<HTMLElement>('button.tab');
    if (tab?.dataset.kind) {
        pastKind = tab.dataset.kind as RunKind;
        renderPast();
        return;
    }
    const li = (ev.target as HTMLElement).closest<HTMLElement>('.past li');
    if (li?.dataset.run) {
        compare = toggleCompare(compare, li.dataset.run);
        renderPast();
        void renderCompare();
    }
}

async function rowsOf(run: string): Promise<Row[]> {
    const cached = rowsCache.get(run);
    if (cached) {
        return cached;
    }
    const reply = await queries.ask({ what: 'run', run, fields: [...OVERLAY_FIELDS] });
    const rows = Array.isArray(reply.rows) ? (reply.rows as Row[]) : [];
    if (pastRuns.find(r => r.run === run)?.outcome) {
        rowsCache.set(run, rows);
    }
    return rows;
}

async function renderCompare(): Promise<void> {
    const chosen = [...compare];
    const grid = $('compare');
    if (chosen.length === 0) {
        $('compare-title').textContent = '';
        for (const c of comparePlots.values()) {
            c.plot.destroy();
        }
        comparePlots.clear();
        grid.replaceChildren();
        return;
    }
    let rows: Row[][];
    try {
        rows = await Promise.all(chosen.map(rowsOf));
    } catch (e) {
        $('compare-title').textContent = `Could not load the runs: ${(e as Error).message}`;
        return;
    }
    if (chosen.join() !== compare.join()) {
        return; // the selection changed while we waited; the newer call draws
    }
    const now = Date.now() / 1000;
    const names = chosen.map(id => {
        const r = pastRuns.find(p => p.run === id);
        return r ? runName(r, now) : id;
    });
    $('compare-title').textContent = chosen.length === 2 ? `${names[0]} (blue) vs ${names[1]} (orange), by step` : `${names[0]}, by step: pick another run to overlay it`;
    for (const c of comparePlots.values()) {
        c.plot.destroy();
    }
    comparePlots.clear();
    const boxes: HTMLElement[] = [];
    const c = { fg: cssVar('--dd-fg', '#cccccc'), grid: cssVar('--dd-grid', 'rgba(128,128,128,0.2)') };
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
                    label: name, stroke: cssVar(COLORS[i], COLOR_FALLBACKS[i]), width: 1.5, spanGaps: true, points: { show: false },
                })),
            ],
            axes: [countAxis(c), valueAxis(c, 'y', 3, fmt)],
        }, data, plotEl);
        comparePlots.set(def.key, { plot, box, points });
    }
    if (boxes.length === 0) {
        grid.replaceChildren(h('p', 'empty', 'These runs stored no step metrics (loss, throughput, step time).'));
    }
}

// test hook for the e2e and for debugging in the devtools console
window.__deepdiveDashboard = {
    /** Points with a value in the current run's series `key` (e.g. "loss"), or in a chart by its id. */
    pointCount(series: string): number {
        const run = currentRun(state, chosenRun);
        if (!run) {
            return 0;
        }
        const ring = run.series.get(series);
        return ring ? ring.pointCount() : charts.get(series)?.count ?? 0;
    },
    connection: () => conn,
    currentRun: () => currentRun(state, chosenRun)?.id ?? null,
    runs: () => runsByRecency(state).map(r => ({ id: r.id, lastStep: r.lastStep })),
    verdict: () => currentRun(state, chosenRun)?.verdict ?? null,
    gpus: () => state.gpus.size,
    gpuReason: () => state.gpuReason,
    machineSeen: () => state.machineSeen,
    messages: () => state.messages,
    /** The times of the current run's series `key` (oldest first). */
    times: (key: string) => currentRun(state, chosenRun)?.series.get(key)?.times() ?? [],
    /** How many times the stream opened (1 + reconnects). */
    opens: () => opens,
    /** Past runs listed (from the daemon's store). */
    pastRuns: () => pastRuns.map(r => ({ run: r.run, name: r.name, outcome: r.outcome, kind: r.kind, label: runName(r, Date.now() / 1000) })),
    /** The past-runs tab shown (its kind). */
    pastTab: () => pastKind,
    /** Per chart shown without data (by id): the sentence it says instead. */
    chartReasons: () => Object.fromEntries([...charts].filter(([, c]) => !c.box.hidden && c.box.dataset.empty === 'true')
        .map(([id, c]) => [id, c.why.textContent])),
    /** Every drawn uPlot chart's axis labels as page boxes (CSS px), with its card's box. */
    axisLabels: () => [...charts.entries(), ...[...comparePlots.entries()].map(([k, c]) => [`compare-${k}`, c] as const)]
        .filter(([, c]) => c.plot && !c.box.hidden)
        .map(([id, c]) => {
            const r = c.box.getBoundingClientRect();
            return { chart: id, card: { left: r.left, right: r.right }, boxes: labelBoxes(c.plot!) };
        }),
    /** Runs picked for the overlay. */
    compared: () => [...compare],
    /** Points per compared run in the overlay chart of `key` (loss, samples_per_s, step_time_s). */
    overlayPoints: (key: string) => comparePlots.get(key)?.points ?? [],
    /** Closes the websocket as if the network dropped it (the page must reconnect by itself). */
    dropConnection: () => ws?.close(4000, 'dropped by test hook'),
    /** The Tune section: tuneStudies(), tuneTrials(study), tuneBest(study), tuneHistoryPoints(). */
    ...tune.hooks(),
    /** The Compression section: compressModels(), compressSteps(model), compressLive(), compressBars(). */
    ...compress.hooks(),
};

function start(): void {
    chartBoxes();
    $('runs-body').addEventListener('click', onRunClick);
    $('past-body').addEventListener('click', onPastClick);
    $('past-body').addEventListener('keydown', ev => {
        if (ev.key === 'Enter' || ev.key === ' ') {
            onPastClick(ev);
        }
    });
    $('runs-body').addEventListener('keydown', ev => {
        if (ev.key === 'Enter') {
            onRunClick(ev);
        }
    });
    $('devices-body').replaceChildren(h('p', 'empty', 'Waiting for the first machine sample…'));
    renderNoRun();
    renderRuns(null);
    tune.start();
    compress.start();
    connect();
}

if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
} else {
    start();
}
