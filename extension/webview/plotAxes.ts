/// <reference lib="dom" />
// uPlot axes whose labels never overlap and are never cut off: the spacing between ticks comes from the
// measured width of the labels (axes.ts), y axes are as wide as their widest label, and time axes have
// one-line clock labels. Each axis remembers the labels it drew, so that `labelBoxes` can say where they
// are on the page (the e2e checks that no two intersect, at sidebar and at editor-tab width).
import type uPlot from 'uplot';
import { axisSize, clockLabel, LABEL_GAP_PX, tickSpace, widestClockLabel } from './axes';

export const AXIS_FONT_PX = 11;
const FONT = `${AXIS_FONT_PX}px system-ui, -apple-system, "Segoe UI", sans-serif`;
const TICK_PX = 4;
const GAP_PX = 4;
/** Vertical distance between y labels: a line of text and a gap. */
const Y_SPACE_PX = Math.max(30, AXIS_FONT_PX + LABEL_GAP_PX);

let measurer: CanvasRenderingContext2D | null = null;

/** The width of `text` in the axes' font, in CSS px. */
export function textWidth(text: string): number {
    measurer ??= document.createElement('canvas').getContext('2d');
    if (!measurer) {
        return text.length * AXIS_FONT_PX * 0.62;  // no 2D context: a generous estimate
    }
    measurer.font = FONT;
    return measurer.measureText(text).width;
}

type Fmt = (v: number, incr: number) => string;
const drawn = new WeakMap<uPlot, Map<number, { splits: number[]; labels: string[] }>>();

/** uPlot's `values` for `fmt`, remembering what it gave last (what the axis drew). */
function recording(fmt: Fmt): uPlot.Axis.DynamicValues {
    return (u, splits, axisIdx, _space, incr) => {
        const labels = splits.map(v => (v === null || v === undefined ? '' : fmt(v, incr)));
        let axes = drawn.get(u);
        if (!axes) {
            axes = new Map();
            drawn.set(u, axes);
        }
        axes.set(axisIdx, { splits: [...splits], labels });
        return labels;
    };
}

interface Colors { fg: string; grid: string }

function base(c: Colors, showGrid = true): uPlot.Axis {
    return {
        stroke: c.fg, font: FONT, gap: GAP_PX, grid: { show: showGrid, stroke: c.grid, width: 1 },
        ticks: { stroke: c.grid, width: 1, size: TICK_PX },
    };
}

/** The x axis of a time chart: `14:02:30` labels, at least one label's width (and a gap) apart. */
export function timeAxis(c: Colors): uPlot.Axis {
    return {
        ...base(c), size: AXIS_FONT_PX + TICK_PX + GAP_PX + 8,
        space: () => tickSpace(textWidth(widestClockLabel(1))),
        values: recording((v, incr) => clockLabel(v, incr)),
    };
}

/** The x axis of a chart over steps (or trial numbers): whole numbers, spaced by the widest one. */
export function countAxis(c: Colors): uPlot.Axis {
    const fmt = (v: number): string => (Number.isInteger(v) ? String(v) : '');
    return {
        ...base(c), size: AXIS_FONT_PX + TICK_PX + GAP_PX + 8,
        space: (_u, _i, lo, hi) => tickSpace(Math.max(textWidth(fmt(Math.round(lo))), textWidth(fmt(Math.round(hi))))),
        incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6],
        values: recording(v => fmt(v)),
    };
}

/** A value axis (side 3: left, 1: right) as wide as its widest label, labels a line and a gap apart. */
export function valueAxis(c: Colors, scale: string, side: number, fmt: (v: number | null) => string, showGrid = true): uPlot.Axis {
    return {
        ...base(c, showGrid), scale, side, space: Y_SPACE_PX,
        size: (_u, values) => axisSize((values ?? []).map(textWidth), TICK_PX, GAP_PX),
        values: recording(v => fmt(v)),
    };
}

export interface LabelBox { axis: number; text: string; left: number; right: number; top: number; bottom: number }

/**
 * Where `u`'s axis labels are on the page (CSS px): from the ticks uPlot laid out (`valToPos`), the label
 * texts it drew and their measured widths, placed as uPlot places them (x labels centred under their tick,
 * y labels beside the plot, centred on theirs).
 */
export function labelBoxes(u: uPlot): LabelBox[] {
    const axes = drawn.get(u);
    if (!axes) {
        return [];
    }
    const over = u.over.getBoundingClientRect();
    const out: LabelBox[] = [];
    for (const [axisIdx, { splits, labels }] of axes) {
        const axis = u.axes[axisIdx];
        const scale = axis.scale ?? (axisIdx === 0 ? 'x' : 'y');
        const side = Number(axis.side ?? (axisIdx === 0 ? 2 : 3));
        splits.forEach((v, i) => {
            const text = labels[i];
            if (!text) {
                return;
            }
            const pos = u.valToPos(v, scale);
            const w = textWidth(text);
            if (side === 2 || side === 0) {
                const top = side === 2 ? over.bottom + TICK_PX + GAP_PX : over.top - TICK_PX - GAP_PX - AXIS_FONT_PX;
                out.push({ axis: axisIdx, text, left: over.left + pos - w / 2, right: over.left + pos + w / 2, top, bottom: top + AXIS_FONT_PX });
            } else {
                const left = side === 3 ? over.left - TICK_PX - GAP_PX - w : over.right + TICK_PX + GAP_PX;
                const mid = over.top + pos;
                out.push({ axis: axisIdx, text, left, right: left + w, top: mid - AXIS_FONT_PX / 2, bottom: mid + AXIS_FONT_PX / 2 });
            }
        });
    }
    return out;
}
