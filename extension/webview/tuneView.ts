/// <reference lib="dom" />
// The dashboard's Tune section: the studies `deepdive tune` streams (tune.ts builds them from the events),
// one shown at a time: live trials table, optimisation history (uPlot), pruning curves and parallel
// coordinates (small canvases), parameter importance (bars), and with `--confirm K` the Confirmed block: the
// re-trainings' progress, then a table and a small plot of each top trial's re-trained values, mean and 95 %
// interval next to its search value, the chosen one marked, and the reason. dashboard.ts routes every /stream message
// here and calls render() from its one requestAnimationFrame; only the studies that changed are redrawn.
import uPlot from 'uplot';
import { $, axisColors, cssVar, h, onResize, seriesColor, tableHead } from './dom';
import { fmtNum, fmtSeconds } from './format';
import { formatSig } from '../src/tune/rounding';
import {
    answerLine, applyTune, bestOf, confirmPlot, confirmProgress, confirmRows, countStates, currentStudy, curves, emptyTune,
    fmtParam, fmtParams, history, importanceBars, importanceNote, mixColor, parallelCoords, parseColor, searchLabel,
    studiesByRecency, studyState, trialsOf, type Study, type Trial,
} from './tune';

/** Rows the trials table shows (newest first); the rest are summed up in one line. */
const TABLE_ROWS = 100;
const PLOT_HEIGHT = 170;

/** A canvas sized to its box at the device pixel ratio; returns its context and CSS size. */
function prepare(canvas: HTMLCanvasElement, height: number): { ctx: CanvasRenderingContext2D; w: number; h: number } | null {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 360;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(height * dpr)) {
        canvas.width = Math.round(w * dpr);
        canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) {
        return null;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, height);
    return { ctx, w, h: height };
}

export class TuneView {
    private readonly state = emptyTune();
    private changed = new Set<string>();
    private chosen: string | null = null;
    private shown: string | null = null;
    private studiesKey = '';
    private plot: uPlot | null = null;
    private historyPoints = 0;
    private dirty = false;

    constructor(private readonly schedule: () => void) {}

    /** Feeds one /stream message; asks for a frame when a study changed. */
    apply(msg: unknown): void {
        const now = applyTune(this.state, msg);
        if (now.size > 0) {
            now.forEach(n => this.changed.add(n));
            this.dirty = true;
            this.schedule();
        }
    }

    start(): void {
        $('tune-study').addEventListener('change', ev => {
            this.chosen = (ev.target as HTMLSelectElement).value || null;
            this.dirty = true;
            this.schedule();
        });
        onResize(() => {
            const box = document.querySelector<HTMLElement>('#tune-history .plot');
            if (this.plot && box) {
                this.plot.setSize({ width: Math.max(200, box.clientWidth), height: PLOT_HEIGHT });
            }
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
        const studies = studiesByRecency(this.state);
        const key = studies.map(s => s.name).sort().join('\n');
        const study = currentStudy(this.state, this.chosen);
        if (key !== this.studiesKey) {
            this.studiesKey = key;
            this.renderPicker(studies, study);
        }
        if (!study) {
            this.renderEmpty();
            return;
        }
        const switched = study.name !== this.shown;
        if (switched || changed.has(study.name) || changed.size === 0) {
            if (switched) {
                ($('tune-study') as HTMLSelectElement).value = study.name;
                this.plot?.destroy();
                this.plot = null;
            }
            this.shown = study.name;
            this.renderStudy(study);
        }
    }

    private renderPicker(studies: Study[], current: Study | null): void {
        const select = $('tune-study') as HTMLSelectElement;
        select.replaceChildren(...studies.map(s => {
            const o = h('option', undefined, s.name);
            o.value = s.name;
            return o;
        }));
        select.hidden = studies.length < 2;
        if (current) {
            select.value = current.name;
        }
    }

    private renderEmpty(): void {
        $('tune-body').hidden = true;
        $('tune-meta').textContent = '';
        $('tune-empty').hidden = false;
    }

    private renderStudy(s: Study): void {
        $('tune-empty').hidden = true;
        $('tune-body').hidden = false;
        const n = countStates(s);
        const best = bestOf(s);
        const total = s.nTrials ? `${s.trials.size + s.forgotten} of ${s.nTrials} trials` : `${s.trials.size + s.forgotten} trials`;
        const bits = [
            `${s.direction} ${s.metric}`,
            total,
            `${n.complete} complete · ${n.pruned} pruned · ${n.fail} failed · ${n.running} running${n.waiting ? ` · ${n.waiting} waiting` : ''}`,
        ];
        const search = searchLabel(s);
        if (search) {
            bits.push(search);
        }
        if (s.parallel && s.parallel > 1) {
            bits.push(`${s.parallel} in parallel`);
        }
        const confirming = confirmProgress(s);
        bits.push(s.done ? `finished in ${fmtSeconds(s.done.seconds)}` : confirming ? `confirming: ${confirming}` : 'running');
        const meta = $('tune-meta');
        meta.textContent = bits.join(' · ');
        meta.dataset.state = studyState(s);
        meta.title = s.metricSource ? `${s.metric}: ${s.metricSource}` : '';
        const bestEl = $('tune-best');
        bestEl.replaceChildren();
        const answer = answerLine(s);
        const chosen = s.confirmation?.candidates.find(c => c.number === s.confirmation?.chosen);
        if (answer && chosen) {
            bestEl.append(h('strong', undefined, answer), document.createTextNode(`  ${fmtParams(chosen.params)}`), h('br'));
        }
        if (best) {
            bestEl.append(h(answer ? 'span' : 'strong', undefined, `${answer ? 'Search\'s best' : 'Best'}: #${best.number} ${s.metric} ${formatSig(best.value)}`),
                document.createTextNode(`  ${fmtParams(best.params)}`));
        }
        this.renderConfirm(s);
        this.renderHistory(s);
        this.renderCurves(s);
        this.renderCoords(s);
        this.renderImportance(s);
        this.renderTable(s);
    }

    // -- confirmation (--confirm K): progress, then the table and plot of the re-trained top trials --------
    private renderConfirm(s: Study): void {
        const box = $('tune-confirm');
        const c = s.confirmation;
        box.hidden = c === null;
        if (!c) {
            box.dataset.state = 'none';
            return;
        }
        const progress = confirmProgress(s);
        box.dataset.state = c.finished ? 'finished' : 'running';
        const seeds = c.seeds.length ? ` with seeds ${c.seeds.join(', ')}` : '';
        box.querySelector<HTMLElement>('.title')!.textContent = progress
            ? `Confirming: ${progress}`
            : `Confirmed: top ${c.k ?? c.candidates.length} re-trained${seeds}`;
        const table = confirmRows(s);
        const tableBox = box.querySelector<HTMLElement>('.tune-confirm-table')!;
        box.dataset.rows = String(table?.rows.length ?? 0);
        if (table) {
            const el = h('table', 'tune-table');
            const thead = tableHead([...table.head, '']);
            const tbody = h('tbody');
            for (const row of table.rows) {
                const tr = h('tr');
                tr.dataset.trial = String(row.number);
                if (row.chosen) {
                    tr.classList.add('best');
                    tr.dataset.chosen = 'true';
                }
                row.cells.forEach((text, i) => {
                    const td = h('td', 'num', text);
                    if (i === row.cells.length - 1 && row.interval) {
                        td.title = `95 % CI ${row.interval}`;
                    }
                    tr.append(td);
                });
                tr.append(h('td', 'chosen', row.chosen ? '✓ chosen' : ''));
                tbody.append(tr);
            }
            el.append(thead, tbody);
            tableBox.replaceChildren(el);
        } else {
            tableBox.replaceChildren(h('p', 'empty', 'No re-training finished yet.'));
        }
        const reason = box.querySelector<HTMLElement>('.tune-confirm-reason')!;
        reason.replaceChildren(...(c.reason ? [document.createTextNode(c.reason)] : []),
            ...(table?.failures.length ? [h('span', 'failures', `failed: ${table.failures.join('; ')}`)] : []));
        this.renderConfirmPlot(box.querySelector('canvas')!, s);
    }

    /** Each re-trained trial's column: its search value (◇), re-trained values (•), mean and 95 % interval (┿). */
    private renderConfirmPlot(canvas: HTMLCanvasElement, s: Study): void {
        const plot = confirmPlot(s);
        canvas.hidden = plot === null;
        canvas.dataset.columns = String(plot?.columns.length ?? 0);
        if (!plot) {
            return;
        }
        const p = prepare(canvas, PLOT_HEIGHT);
        if (!p) {
            return;
        }
        const { ctx, w, h: height } = p;
        const muted = cssVar('--dd-muted', '#9d9d9d');
        const fg = cssVar('--dd-fg', '#cccccc');
        const left = 56;
        const bottom = 18;
        const top = 6;
        const [y0, y1] = plot.y;
        const pad = y1 === y0 ? Math.max(Math.abs(y0) * 0.01, 1e-6) : (y1 - y0) * 0.08;
        const lo = y0 - pad;
        const hi = y1 + pad;
        const sy = (y: number) => top + (1 - (y - lo) / (hi - lo)) * (height - top - bottom);
        const n = plot.columns.length;
        const slot = (w - left - 6) / n;
        ctx.font = '10px sans-serif';
        ctx.fillStyle = muted;
        ctx.fillText(fmtNum(y1), 2, sy(y1) + 4);
        ctx.fillText(fmtNum(y0), 2, sy(y0) + 4);
        ctx.strokeStyle = cssVar('--dd-grid', 'rgba(128,128,128,0.2)');
        ctx.lineWidth = 1;
        ctx.strokeRect(left, top, w - left - 6, height - top - bottom);
        const searchC = seriesColor(1);
        const valueC = seriesColor(0);
        plot.columns.forEach((col, i) => {
            const cx = left + slot * (i + 0.5);
            const xs = cx - Math.min(14, slot / 4);   // the search value, left of the re-trainings
            const xr = cx + Math.min(8, slot / 6);    // the re-trainings, their mean and interval
            if (col.chosen) {
                ctx.fillStyle = cssVar('--vscode-list-inactiveSelectionBackground', 'rgba(55, 148, 255, 0.15)');
                ctx.fillRect(left + slot * i + 1, top + 1, slot - 2, height - top - bottom - 2);
            }
            if (col.search !== null) {
                const y = sy(col.search);
                ctx.strokeStyle = searchC;
                ctx.lineWidth = 1.5;
                ctx.beginPath();
                ctx.moveTo(xs, y - 5);
                ctx.lineTo(xs + 5, y);
                ctx.lineTo(xs, y + 5);
                ctx.lineTo(xs - 5, y);
                ctx.closePath();
                ctx.stroke();
            }
            ctx.fillStyle = valueC;
            col.values.forEach((v, k) => {
                ctx.beginPath();
                ctx.arc(xr + (k - (col.values.length - 1) / 2) * 3, sy(v), 2.5, 0, Math.PI * 2);
                ctx.fill();
            });
            ctx.strokeStyle = fg;
            ctx.lineWidth = 1.5;
            if (col.ci95) {
                const [a, b] = col.ci95;
                ctx.beginPath();
                ctx.moveTo(xr + 9, sy(a));
                ctx.lineTo(xr + 9, sy(b));
                ctx.moveTo(xr + 6, sy(a));
                ctx.lineTo(xr + 12, sy(a));
                ctx.moveTo(xr + 6, sy(b));
                ctx.lineTo(xr + 12, sy(b));
                ctx.stroke();
            }
            if (col.mean !== null) {
                ctx.beginPath();
                ctx.moveTo(xr - 6, sy(col.mean));
                ctx.lineTo(xr + 14, sy(col.mean));
                ctx.stroke();
            }
            ctx.fillStyle = col.chosen ? fg : muted;
            ctx.font = col.chosen ? 'bold 10px sans-serif' : '10px sans-serif';
            ctx.textAlign = 'center';
            ctx.fillText(`#${col.number}${col.chosen ? ' ✓' : ''}`, cx, height - 5);
            ctx.textAlign = 'left';
            ctx.font = '10px sans-serif';
        });
    }

    // -- optimisation history: value of each complete trial (points) and the best so far (steps) ------
    private renderHistory(s: Study): void {
        const box = $('tune-history');
        const hist = history(s);
        this.historyPoints = hist.x.length;
        box.dataset.points = String(hist.x.length);
        const plotEl = box.querySelector<HTMLElement>('.plot')!;
        const empty = box.querySelector<HTMLElement>('.empty')!;
        empty.hidden = hist.x.length > 0;
        if (hist.x.length === 0) {
            this.plot?.destroy();
            this.plot = null;
            return;
        }
        const data: uPlot.AlignedData = [hist.x, hist.value, hist.best];
        if (this.plot) {
            this.plot.setData(data);
            return;
        }
        const { fg, grid } = axisColors();
        const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
        this.plot = new uPlot({
            width: Math.max(200, plotEl.clientWidth || 360),
            height: PLOT_HEIGHT,
            legend: { show: true, live: false },
            cursor: { drag: { x: false, y: false } },
            scales: { x: { time: false } },
            series: [
                { label: 'trial' },
                {
                    label: s.metric, stroke: seriesColor(0), fill: seriesColor(0),
                    paths: () => null, points: { show: true, size: 6 },
                },
                {
                    label: 'best so far', stroke: seriesColor(1), width: 2,
                    paths: uPlot.paths.stepped!({ align: 1 }), points: { show: false },
                },
            ],
            axes: [
                { ...axis, values: (_u, vals) => vals.map(v => (Number.isInteger(v) ? String(v) : '')) },
                { ...axis, size: 64, values: (_u, vals) => vals.map(v => fmtNum(v)) },
            ],
        }, data, plotEl);
    }

    // -- pruning curves: one line per trial, pruned ones dimmed ----------------------------------------
    private renderCurves(s: Study): void {
        const box = $('tune-curves');
        const canvas = box.querySelector('canvas')!;
        const c = curves(s);
        box.dataset.lines = String(c?.curves.length ?? 0);
        box.querySelector<HTMLElement>('.empty')!.hidden = c !== null;
        canvas.hidden = c === null;
        if (!c) {
            return;
        }
        const p = prepare(canvas, PLOT_HEIGHT);
        if (!p) {
            return;
        }
        const { ctx, w, h: height } = p;
        const fg = cssVar('--dd-muted', '#9d9d9d');
        const colors: Record<Trial['state'], string> = {
            complete: seriesColor(0), running: seriesColor(1),
            pruned: fg, fail: cssVar('--dd-error', '#f48771'), waiting: fg,
        };
        const left = 56;
        const bottom = 16;
        const [x0, x1] = c.x;
        const [y0, y1] = c.y;
        const sx = (x: number) => left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (w - left - 6);
        const sy = (y: number) => 4 + (1 - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0))) * (height - bottom - 8);
        ctx.font = '10px sans-serif';
        ctx.fillStyle = fg;
        ctx.fillText(fmtNum(y1), 2, 12);
        ctx.fillText(fmtNum(y0), 2, height - bottom);
        ctx.fillText(`step ${fmtNum(x0)}`, left, height - 3);
        const last = `step ${fmtNum(x1)}`;
        ctx.fillText(last, w - 6 - ctx.measureText(last).width, height - 3);
        ctx.strokeStyle = cssVar('--dd-grid', 'rgba(128,128,128,0.2)');
        ctx.strokeRect(left, 4, w - left - 6, height - bottom - 8);
        // pruned first (underneath), then the others
        const order = [...c.curves].sort((a, b) => Number(b.state === 'pruned') - Number(a.state === 'pruned'));
        for (const cv of order) {
            ctx.globalAlpha = cv.state === 'pruned' ? 0.35 : 0.9;
            ctx.strokeStyle = colors[cv.state];
            ctx.lineWidth = cv.state === 'pruned' ? 1 : 1.5;
            ctx.beginPath();
            cv.points.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(sx(x), sy(y)) : ctx.lineTo(sx(x), sy(y))));
            if (cv.points.length === 1) {
                ctx.arc(sx(cv.points[0][0]), sy(cv.points[0][1]), 1.5, 0, Math.PI * 2);
            }
            ctx.stroke();
        }
        ctx.globalAlpha = 1;
    }

    // -- parallel coordinates: an axis per param and the value, a line per complete trial -------------
    private renderCoords(s: Study): void {
        const box = $('tune-coords');
        const canvas = box.querySelector('canvas')!;
        const pc = parallelCoords(s);
        box.dataset.lines = String(pc.lines.length);
        const ok = pc.lines.length > 0 && pc.axes.length > 1;
        box.querySelector<HTMLElement>('.empty')!.hidden = ok;
        canvas.hidden = !ok;
        if (!ok) {
            return;
        }
        const p = prepare(canvas, PLOT_HEIGHT + 30);
        if (!p) {
            return;
        }
        const { ctx, w, h: height } = p;
        const muted = cssVar('--dd-muted', '#9d9d9d');
        const worse = parseColor(seriesColor(1)) ?? [240, 160, 80];
        const betterC = parseColor(seriesColor(0)) ?? [55, 148, 255];
        const top = 30;
        const bottom = 18;
        const pad = 36;
        const n = pc.axes.length;
        const ax = (i: number) => pad + (i / (n - 1)) * (w - 2 * pad);
        const ay = (f: number) => top + (1 - f) * (height - top - bottom);
        // worst first, so the best lines are on top
        for (const line of [...pc.lines].sort((a, b) => a.color - b.color)) {
            ctx.strokeStyle = mixColor(worse, betterC, line.color);
            ctx.globalAlpha = 0.75;
            ctx.lineWidth = 1.25;
            ctx.beginPath();
            let pen = false;
            line.pos.forEach((f, i) => {
                if (f === null) {
                    pen = false;
                    return;
                }
                if (pen) {
                    ctx.lineTo(ax(i), ay(f));
                } else {
                    ctx.moveTo(ax(i), ay(f));
                    pen = true;
                }
            });
            ctx.stroke();
        }
        ctx.globalAlpha = 1;
        ctx.font = '10px sans-serif';
        ctx.lineWidth = 1;
        pc.axes.forEach((a, i) => {
            const x = ax(i);
            ctx.strokeStyle = muted;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, height - bottom);
            ctx.stroke();
            ctx.fillStyle = cssVar('--dd-fg', '#cccccc');
            const name = a.kind === 'log' ? `${a.name} (log)` : a.name;
            ctx.textAlign = i === 0 ? 'left' : i === n - 1 ? 'right' : 'center';
            ctx.fillText(name, x, 11);
            ctx.fillStyle = muted;
            const lo = a.kind === 'categorical' ? a.categories[0] ?? '' : fmtParam(a.min);
            const hi = a.kind === 'categorical' ? a.categories.at(-1) ?? '' : fmtParam(a.max);
            ctx.fillText(lo, x, height - 5);
            if (hi !== lo) {
                ctx.fillText(hi, x, top - 5);
            }
            if (a.kind === 'categorical') {
                a.categories.slice(1, -1).forEach((c, k) => ctx.fillText(c, x, ay((k + 1) / (a.categories.length - 1)) - 2));
            }
        });
        ctx.textAlign = 'left';
    }

    // -- importance: horizontal bars ------------------------------------------------------------------
    private renderImportance(s: Study): void {
        const body = $('tune-importance').querySelector<HTMLElement>('.bars')!;
        const bars = importanceBars(s);
        const note = importanceNote(s);
        if (note !== null) {
            body.replaceChildren(h('p', 'empty', note));
            return;
        }
        const max = Math.max(...bars.map(b => b.value), 1e-12);
        body.replaceChildren(...bars.map(b => {
            const row = h('div', 'tune-bar');
            row.dataset.param = b.name;
            const track = h('div', 'track');
            const fill = h('div', 'fill');
            fill.style.width = `${Math.max(0, Math.min(100, (100 * b.value) / max))}%`;
            track.append(fill);
            row.append(h('span', 'label', b.name), track, h('span', 'value', fmtNum(b.value)));
            return row;
        }));
    }

    // -- trials table, newest first ---------------------------------------------------------------------
    private renderTable(s: Study): void {
        const trials = trialsOf(s).reverse();
        const names = [...new Set(trials.slice(0, TABLE_ROWS).flatMap(t => Object.keys(t.params)))].sort();
        const table = h('table', 'tune-table');
        const thead = tableHead(['#', 'state', s.metric, ...names, 'duration', 'note']);
        const tbody = h('tbody');
        const best = bestOf(s)?.number;
        for (const t of trials.slice(0, TABLE_ROWS)) {
            const tr = h('tr');
            tr.dataset.trial = String(t.number);
            tr.dataset.state = t.state;
            if (t.number === best) {
                tr.classList.add('best');
            }
            const note = t.reason ?? t.waitingReason ?? (t.worker !== null && t.state === 'running' ? `worker ${t.worker}` : '');
            const value = t.value !== null ? formatSig(t.value)
                : t.intermediate.length ? `(${formatSig(t.intermediate[t.intermediate.length - 1][1])})` : '—';
            tr.append(h('td', 'num', String(t.number)), h('td', `state state-${t.state}`, t.state), h('td', 'num', value),
                ...names.map(n => h('td', 'num', fmtParam(t.params[n]))),
                h('td', 'num', t.durationS === null ? '—' : fmtSeconds(t.durationS)), h('td', 'note', note));
            tbody.append(tr);
        }
        table.append(thead, tbody);
        const wrap = $('tune-trials');
        const more = trials.length > TABLE_ROWS ? [h('p', 'meta', `${trials.length - TABLE_ROWS} older trials not shown`)] : [];
        const forgot = s.forgotten ? [h('p', 'meta', `${s.forgotten} older finished trials forgotten (memory cap)`)] : [];
        wrap.replaceChildren(table, ...more, ...forgot);
    }

    /** Test hooks, merged into window.__deepdiveDashboard. */
    hooks(): Record<string, unknown> {
        const study = (name?: string) => (name ? this.state.studies.get(name) ?? null : currentStudy(this.state, this.chosen));
        return {
            /** Studies seen, newest first. */
            tuneStudies: () => studiesByRecency(this.state).map(s => ({
                study: s.name, direction: s.direction, metric: s.metric, trials: s.trials.size, done: s.done !== null,
                state: studyState(s), search: searchLabel(s), metricSource: s.metricSource, importanceNote: importanceNote(s),
                ...countStates(s),
            })),
            /** The trials of a study (default: the shown one), by number. */
            tuneTrials: (name?: string) => {
                const s = study(name);
                return s ? trialsOf(s).map(t => ({
                    number: t.number, state: t.state, value: t.value, params: t.params, reason: t.reason,
                    durationS: t.durationS, intermediate: t.intermediate.length,
                })) : [];
            },
            /** The best trial of a study (default: the shown one), or null. */
            tuneBest: (name?: string) => {
                const s = study(name);
                return s ? bestOf(s) : null;
            },
            /** The confirmation (--confirm K) of a study (default: the shown one): progress, then the table's rows. */
            tuneConfirmation: (name?: string) => {
                const s = study(name);
                const c = s?.confirmation;
                return s && c ? {
                    finished: c.finished, progress: confirmProgress(s), done: c.done, total: c.total, k: c.k, seeds: c.seeds,
                    chosen: c.chosen, reason: c.reason, answer: answerLine(s), chosenNumber: s.done?.chosenNumber ?? null,
                    candidates: c.candidates.map(x => ({ number: x.number, searchValue: x.searchValue, values: x.values, mean: x.mean, ci95: x.ci95 })),
                } : null;
            },
            /** Points in the shown study's history chart. */
            tuneHistoryPoints: () => this.historyPoints,
            /** The study the Tune section shows. */
            tuneShown: () => this.shown,
        };
    }
}
