/// <reference lib="dom" />
// The dashboard's Devices and Host sections: a card per GPU and a row per host metric, each with its
// latest value, a gauge where the metric has a maximum, and a sparkline of the recent samples (a
// canvas redrawn in place). dashboard.ts calls render() from its one requestAnimationFrame when a
// machine sample arrived.
import { fmtMib, fmtNum, fmtPct, fmtRate, type GpuState, type Ring, type State } from './model';
import { $, cssVar, h } from './dom';

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

const HOST_METRICS: { key: string; label: string; fmt: (v: number | null) => string; max: number | null }[] = [
    { key: 'cpu_pct', label: 'CPU', fmt: fmtPct, max: 100 },
    { key: 'mem_pct', label: 'memory', fmt: fmtPct, max: 100 },
    { key: 'disk_read_b_s', label: 'disk read', fmt: fmtRate, max: null },
    { key: 'disk_write_b_s', label: 'disk write', fmt: fmtRate, max: null },
    { key: 'net_rx_b_s', label: 'net in', fmt: fmtRate, max: null },
    { key: 'net_tx_b_s', label: 'net out', fmt: fmtRate, max: null },
];

interface GpuRow { value: HTMLElement; bar: HTMLElement; canvas: HTMLCanvasElement }

export class MachineView {
    private readonly gpuCards = new Map<number, { root: HTMLElement; title: HTMLElement; note: HTMLElement; rows: Map<string, GpuRow> }>();
    private readonly hostRows = new Map<string, { value: HTMLElement; canvas: HTMLCanvasElement }>();

    /** Before the first machine sample: the Devices section says it is waiting. */
    start(): void {
        $('devices-body').replaceChildren(h('p', 'empty', 'Waiting for the first machine sample…'));
    }

    render(state: State): void {
        this.renderDevices(state);
        this.renderHost(state);
    }

    private renderDevices(state: State): void {
        const body = $('devices-body');
        if (state.gpus.size === 0) {
            this.gpuCards.clear();
            body.replaceChildren(h('p', 'empty', state.gpuReason ? `No GPUs: ${state.gpuReason}` : 'No GPU data.'));
            body.dataset.gpus = '0';
            return;
        }
        if (body.dataset.gpus === '0' || body.querySelector('.empty')) {
            body.replaceChildren();
        }
        body.dataset.gpus = String(state.gpus.size);
        for (const [index, card] of this.gpuCards) {
            if (!state.gpus.has(index)) {
                card.root.remove();
                this.gpuCards.delete(index);
            }
        }
        for (const gpu of state.gpus.values()) {
            let card = this.gpuCards.get(gpu.index);
            if (!card) {
                const root = h('div', 'card gpu');
                const title = h('div', 'card-title');
                const note = h('div', 'warn');
                root.append(title, note);
                const rows = new Map<string, GpuRow>();
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
                this.gpuCards.set(gpu.index, card);
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

    private renderHost(state: State): void {
        const body = $('host-body');
        if (this.hostRows.size === 0) {
            body.replaceChildren();
            for (const m of HOST_METRICS) {
                const row = h('div', 'metric');
                const value = h('span', 'value');
                const canvas = h('canvas', 'spark');
                row.append(h('span', 'label', m.label), value, canvas);
                body.append(row);
                this.hostRows.set(m.key, { value, canvas });
            }
        }
        for (const m of HOST_METRICS) {
            const row = this.hostRows.get(m.key)!;
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
}
