/// <reference lib="dom" />
// DOM helpers the dashboard page's sections share (dashboard.ts and the views split out of it): an
// element by id, a new element, a theme colour, and the width, axis colours and series colours of
// its uPlot charts.

/** The page's element `#id`; a page without it is a bug, said as such. */
export const $ = (id: string): HTMLElement => {
    const el = document.getElementById(id);
    if (!el) {
        throw new Error(`the page has no #${id}`);
    }
    return el;
};

/** A new element with a class and text. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
    const el = document.createElement(tag);
    if (cls) {
        el.className = cls;
    }
    if (text !== undefined) {
        el.textContent = text;
    }
    return el;
}

/** A table's `<thead>` with one header cell per column name. */
export function tableHead(columns: readonly string[]): HTMLTableSectionElement {
    const row = h('tr');
    for (const name of columns) {
        row.append(h('th', undefined, name));
    }
    const thead = h('thead');
    thead.append(row);
    return thead;
}

/** The theme's value of the CSS variable `name`, else `fallback`. */
export function cssVar(name: string, fallback: string): string {
    return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

const COLORS = ['--dd-accent', '--dd-series2', '--dd-series3'];
const COLOR_FALLBACKS = ['#3794ff', '#f0a050', '#89d185'];

/** The stroke of a chart's `i`-th series: the theme's colour, else a fixed one. */
export function seriesColor(i: number): string {
    return cssVar(COLORS[i], COLOR_FALLBACKS[i]);
}

/** The colours of a chart's axis labels and grid. */
export function axisColors(): { fg: string; grid: string } {
    return { fg: cssVar('--dd-fg', '#cccccc'), grid: cssVar('--dd-grid', 'rgba(128,128,128,0.2)') };
}

/** A chart's width: its container's, never wider (a sidebar is narrow), never unreadably narrow. */
export function plotWidth(el: HTMLElement): number {
    return Math.max(160, Math.floor(el.clientWidth || 400));
}

/** Calls `redraw` once the window has stopped resizing for `delayMs` (every section redraws at the new width). */
export function onResize(redraw: () => void, delayMs = 100): void {
    let timer = 0;
    window.addEventListener('resize', () => {
        clearTimeout(timer);
        timer = window.setTimeout(redraw, delayMs);
    });
}
