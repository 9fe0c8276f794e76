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

/** The reader's own scrolling, clicking or typing: after it, a revealed section is no longer held in view. */
const READER_INPUT = ['wheel', 'pointerdown', 'keydown', 'touchstart'] as const;
let releaseHeld: (() => void) | null = null;

/**
 * Scrolls `panel` to the top of the page, outlines it for a moment, and holds it there while the page is still
 * filling: the sections above it get their charts, lists and tables as the stream's history arrives after the
 * page opened (later on a busy machine), and each of them pushes the section down. Held until the reader
 * scrolls, clicks or types, or for `holdMs`; a later reveal replaces an earlier one.
 */
export function revealSection(panel: HTMLElement, holdMs = 15000): void {
    releaseHeld?.();
    panel.classList.add('flash');
    window.setTimeout(() => panel.classList.remove('flash'), 1200);
    const until = performance.now() + holdMs;
    let frame = 0;
    const hold = (): void => {
        // a page that cannot scroll further keeps the section where it is: scrolling again would change nothing
        const top = panel.getBoundingClientRect().top;
        const room = document.documentElement.scrollHeight - window.innerHeight - window.scrollY;
        if (Math.abs(top) > 1 && (top < 0 || room > 1)) {
            panel.scrollIntoView({ block: 'start' });
        }
        frame = performance.now() < until ? window.requestAnimationFrame(hold) : 0;
        if (!frame) {
            release();
        }
    };
    const release = (): void => {
        window.cancelAnimationFrame(frame);
        for (const type of READER_INPUT) {
            window.removeEventListener(type, release, true);
        }
        if (releaseHeld === release) {
            releaseHeld = null;
        }
    };
    for (const type of READER_INPUT) {
        window.addEventListener(type, release, { capture: true, passive: true });
    }
    releaseHeld = release;
    panel.scrollIntoView({ block: 'start' });
    frame = window.requestAnimationFrame(hold);
}
