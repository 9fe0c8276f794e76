/// <reference lib="dom" />
// The dashboard's Diagnosis section: one script's latest measured diagnosis at a time (diagnose.ts builds them
// from the `diagnose.*` events). The step-time breakdown as one stacked horizontal bar (SVG) with a legend of
// each part's ms and share; the findings (promoted first with their share, then measured hot lines, then
// hints), each with its file:line, a link in VS Code (the editor opens it) and text in a browser; the hotspots
// table; the measured fixes with their confidence intervals. No inline style: colours are dashboard.css classes.
import {
    applyDiagnose, currentScript, describeSpeedup, emptyDiagnose, fmtMsShort, fmtShare, PART_LABELS, scriptsByRecency, shortPath,
    speedupsOf, type Diagnosed, type Finding, type Report,
} from './diagnose';
import { $, h, onResize, revealSection, tableHead } from './dom';
import { host, openInEditor } from './host';

const SVG = 'http://www.w3.org/2000/svg';

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

export class DiagnoseView {
    private readonly state = emptyDiagnose();
    private chosen: string | null = null;
    private shown: string | null = null;
    private scriptsKey = '';
    private dirty = false;
    private segments = 0;

    constructor(private readonly schedule: () => void) {}

    /** Feeds one /stream message; asks for a frame when a script changed. */
    apply(msg: unknown): void {
        if (applyDiagnose(this.state, msg).size > 0) {
            this.dirty = true;
            this.schedule();
        }
    }

    start(): void {
        $('diagnose-script').addEventListener('change', ev => {
            this.chosen = (ev.target as HTMLSelectElement).value || null;
            this.dirty = true;
            this.schedule();
        });
        $('diagnose-body').addEventListener('click', ev => {
            const a = (ev.target as HTMLElement).closest<HTMLElement>('a.loc');
            if (a?.dataset.file && a.dataset.line) {
                ev.preventDefault();
                openInEditor(a.dataset.file, Number(a.dataset.line));
            }
        });
        onResize(() => {
            this.dirty = true;
            this.schedule();
        });
        this.renderEmpty();
    }

    /** Scrolls the section into view and holds it there while the page fills (the editor asks after a diagnosis). */
    reveal(): void {
        revealSection($('diagnose-panel'));
    }

    /** Called from the page's animation frame. */
    render(): void {
        if (!this.dirty) {
            return;
        }
        this.dirty = false;
        const scripts = scriptsByRecency(this.state);
        const key = scripts.map(d => d.script).sort().join('\n');
        const d = currentScript(this.state, this.chosen);
        if (key !== this.scriptsKey) {
            this.scriptsKey = key;
            const select = $('diagnose-script') as HTMLSelectElement;
            select.replaceChildren(...scripts.map(s => {
                const o = h('option', undefined, s.name);
                o.value = s.script;
                o.title = s.script;
                return o;
            }));
            select.hidden = scripts.length < 2;
        }
        if (!d) {
            this.renderEmpty();
            return;
        }
        ($('diagnose-script') as HTMLSelectElement).value = d.script;
        this.shown = d.script;
        this.renderScript(d);
    }

    private renderEmpty(): void {
        $('diagnose-empty').hidden = false;
        $('diagnose-body').hidden = true;
        $('diagnose-meta').textContent = '';
        this.segments = 0;
    }

    private renderScript(d: Diagnosed): void {
        $('diagnose-empty').hidden = true;
        $('diagnose-body').hidden = false;
        const r = d.report;
        const meta = [d.script];
        if (r) {
            meta.push(r.device, `${r.steps} step${r.steps === 1 ? '' : 's'} measured after ${r.warmup} warm-up`);
            if (r.engine) {
                meta.push('deepdive.engine telemetry');
            }
            if (r.wallS !== null) {
                meta.push(`diagnosed in ${r.wallS.toFixed(0)} s`);
            }
        } else {
            meta.push('no measured report yet');
        }
        $('diagnose-meta').textContent = meta.join(' · ');
        const note = $('diagnose-note');
        note.textContent = r?.note ?? '';
        note.hidden = !r?.note;
        $('diagnose-report').hidden = !r;
        if (r) {
            this.renderBreakdown(r);
            this.renderFindings(r);
            this.renderHotspots(r);
        }
        this.renderFixes(d);
    }

    // -- the stacked bar and its legend ----------------------------------------------------------------
    private renderBreakdown(r: Report): void {
        const spread = r.spread ? ` (fastest ${fmtMsShort(r.spread[0])}, slowest ${fmtMsShort(r.spread[1])})` : '';
        $('diagnose-step').textContent = `${fmtMsShort(r.stepMs)} ms per step, median${spread}`;
        const holder = $('diagnose-svg');
        const width = Math.max(200, holder.clientWidth || 360);
        const height = 22;
        const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img' }, 'diagnose-bar');
        const title = svg('title', {});
        title.textContent = `Step time by part: ${r.parts.filter(p => p.ms > 0).map(p => `${p.label} ${fmtShare(p.share)}`).join(', ')}`;
        root.append(title);
        let x = 0;
        let n = 0;
        for (const p of r.parts) {
            if (p.share <= 0) {
                continue;
            }
            const w = p.share * width;
            const rect = svg('rect', { x: x.toFixed(2), y: 0, width: Math.max(0.5, w).toFixed(2), height }, `seg part-${p.part}`);
            rect.dataset.part = p.part;
            rect.dataset.share = p.share.toFixed(4);
            const tip = svg('title', {});
            tip.textContent = `${p.label}: ${fmtMsShort(p.ms)} ms (${fmtShare(p.share)})`;
            rect.append(tip);
            root.append(rect);
            x += w;
            n++;
        }
        holder.replaceChildren(root);
        this.segments = n;
        holder.dataset.segments = String(n);
        $('diagnose-legend').replaceChildren(...r.parts.map(p => {
            const li = h('li', p.ms > 0 ? undefined : 'zero');
            li.dataset.part = p.part;
            li.append(h('span', `swatch part-${p.part}`), h('span', 'part-name', p.label),
                h('span', 'part-ms', `${fmtMsShort(p.ms)} ms`), h('span', 'part-share', fmtShare(p.share)));
            return li;
        }));
    }

    // -- findings ----------------------------------------------------------------------------------------
    private renderFindings(r: Report): void {
        const list = $('diagnose-findings');
        if (r.findings.length === 0) {
            list.replaceChildren(h('li', 'empty', 'No findings: no rule matched and no line took a large share of the step.'));
            return;
        }
        list.replaceChildren(...r.findings.map(f => {
            const li = h('li', f.promoted ? 'promoted' : f.share !== null ? 'measured' : 'hint');
            li.dataset.code = f.code;
            li.dataset.line = String(f.line);
            const head = h('div', 'finding-head');
            head.append(h('span', 'code', f.code), this.location(f.file, f.line, r.script));
            if (f.share !== null) {
                head.append(h('span', 'share', `${fmtShare(f.share)} of step time`));
            } else {
                head.append(h('span', 'share none', 'hint: no cost measured'));
            }
            if (f.fixable) {
                head.append(h('span', 'fixable', 'quick fix'));
            }
            li.append(head, h('div', 'message', f.message));
            if (f.evidence) {
                li.append(h('div', 'evidence', `${f.part ? `${PART_LABELS[f.part]}: ` : ''}${f.evidence}`));
            }
            return li;
        }));
    }

    // -- hotspots ------------------------------------------------------------------------------------------
    private renderHotspots(r: Report): void {
        const box = $('diagnose-hotspots');
        if (r.hotspots.length === 0) {
            box.replaceChildren(h('p', 'empty', 'No line of the script took measurable time.'));
            return;
        }
        const table = h('table', 'tune-table diagnose-table');
        const thead = tableHead(['line', 'ms/step', 'share', 'part', 'what']);
        const tbody = h('tbody');
        for (const s of r.hotspots) {
            const tr = h('tr');
            const loc = h('td', 'loc-cell');
            loc.append(this.location(s.file, s.line, r.script));
            tr.append(loc, h('td', 'num', fmtMsShort(s.msPerStep)), h('td', 'num', fmtShare(s.share)),
                h('td', undefined, s.part ? PART_LABELS[s.part] : '—'), h('td', 'note', s.what));
            tbody.append(tr);
        }
        table.append(thead, tbody);
        box.replaceChildren(table);
    }

    // -- measured fixes --------------------------------------------------------------------------------------
    private renderFixes(d: Diagnosed): void {
        const box = $('diagnose-fixes');
        const fixes = speedupsOf(d);
        $('diagnose-fixes-h').hidden = fixes.length === 0;
        if (fixes.length === 0) {
            box.replaceChildren();
            return;
        }
        const table = h('table', 'tune-table diagnose-table');
        const thead = tableHead(['fix', 'speed-up', 'interval', 'ms/step before → after', 'pairs']);
        const tbody = h('tbody');
        for (const s of fixes) {
            const said = describeSpeedup(s);
            const tr = h('tr', `verdict-${s.verdict.replace(/\s+/g, '-')}`);
            tr.dataset.code = s.code;
            const fix = h('td', 'loc-cell');
            fix.append(h('span', 'code', s.code), document.createTextNode(' '), this.location(d.script, s.line, d.script));
            if (s.title) {
                fix.title = s.title;
            }
            tr.append(fix, h('td', 'num', `${said.ratio} ${s.verdict === 'no measurable change' ? '(no measurable change)' : s.verdict}`),
                h('td', 'num', said.interval), h('td', 'num', `${fmtMsShort(s.baselineMs)} → ${fmtMsShort(s.fixedMs)}`),
                h('td', 'num', String(s.pairs)));
            tbody.append(tr);
        }
        table.append(thead, tbody);
        box.replaceChildren(table);
    }

    /** `file:line`: a link the editor opens (VS Code), else text (a browser page cannot open files). */
    private location(file: string, line: number, script: string): HTMLElement {
        const label = `${shortPath(file, script)}:${line}`;
        if (!host) {
            const span = h('span', 'loc', label);
            span.title = file;
            return span;
        }
        const a = h('a', 'loc', label);
        a.href = '#';
        a.title = `Open ${file} at line ${line}`;
        a.dataset.file = file;
        a.dataset.line = String(line);
        return a;
    }

    /** Test hooks, merged into window.__deepdiveDashboard. */
    hooks(): Record<string, unknown> {
        const shown = (): Diagnosed | null => currentScript(this.state, this.chosen);
        return {
            /** Scripts diagnosed, newest first. */
            diagnoseScripts: () => scriptsByRecency(this.state).map(d => ({
                script: d.script, report: d.report !== null, speedups: d.speedups.size,
            })),
            /** The shown report's step time, parts and findings (code, line, share, promoted), or null. */
            diagnoseReport: () => {
                const r = shown()?.report;
                return r ? {
                    stepMs: r.stepMs, parts: r.parts.map(p => ({ part: p.part, ms: p.ms, share: p.share })),
                    findings: r.findings.map((f: Finding) => ({ code: f.code, line: f.line, share: f.share, promoted: f.promoted })),
                    hotspots: r.hotspots.length,
                } : null;
            },
            /** The shown script's measured fixes, newest first. */
            diagnoseSpeedups: () => (shown() ? speedupsOf(shown()!) : []),
            /** Segments drawn in the stacked bar. */
            diagnoseSegments: () => this.segments,
            /** The script the section shows. */
            diagnoseShown: () => this.shown,
        };
    }
}
