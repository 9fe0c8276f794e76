// Axis layout for the dashboard's uPlot charts, the pure part (no DOM): how far apart ticks must be so that
// no two labels overlap, how wide a y axis must be for its widest label, and the clock labels of the
// time axis. plotAxes.ts measures text and hands the widths in; vitest drives these directly.

/** Pixels kept free between two neighbouring labels. */
export const LABEL_GAP_PX = 8;

/**
 * The least distance between two ticks (uPlot's axis `space`) at which labels up to `labelPx` long never
 * overlap: labels are centred on their ticks, so two neighbours need half a label each plus the gap.
 * uPlot then picks the finest "nice" increment whose ticks are at least this far apart: a narrow chart
 * gets fewer ticks (thinned), never crowded ones.
 */
export function tickSpace(labelPx: number, gapPx: number = LABEL_GAP_PX): number {
    return Math.ceil(Math.max(0, labelPx) + Math.max(0, gapPx));
}

/** How many labels of `labelPx` fit side by side along `axisPx` with `gapPx` between them (at least 1). */
export function tickCount(axisPx: number, labelPx: number, gapPx: number = LABEL_GAP_PX): number {
    const per = Math.max(1, labelPx + gapPx);
    return Math.max(1, Math.floor((Math.max(0, axisPx) + gapPx) / per));
}

/**
 * Whether labels at these tick positions (px along the axis, any order), each `widths[i]` long and centred on
 * its tick, keep at least `gapPx` apart. The e2e and the unit tests check laid-out axes with it.
 */
export function labelsClear(positions: readonly number[], widths: readonly number[], gapPx = 0): boolean {
    const spans = positions.map((p, i) => [p - widths[i] / 2, p + widths[i] / 2] as const).sort((a, b) => a[0] - b[0]);
    return spans.every((s, i) => i === 0 || s[0] - spans[i - 1][1] >= gapPx - 1e-9);
}

/**
 * A y axis's width (uPlot's axis `size`): its widest label, the tick and the gap before the label, and a
 * little air at the canvas edge, so that no label is cut off at the edge of the chart.
 */
export function axisSize(labelWidths: readonly number[], tickPx: number, gapPx: number, minPx = 24): number {
    const widest = labelWidths.reduce((m, w) => Math.max(m, w), 0);
    return Math.max(minPx, Math.ceil(widest + tickPx + gapPx + 2));
}

const pad = (n: number): string => String(n).padStart(2, '0');

/**
 * A time-axis label for `t` (seconds since the epoch, local time): `14:02` when the ticks are whole minutes
 * or more apart, `14:02:30` otherwise. One line, one format per axis: no date line that could collide.
 */
export function clockLabel(t: number, stepS: number): string {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return stepS >= 60 ? hm : `${hm}:${pad(d.getSeconds())}`;
}

/** The longest label `clockLabel` gives for this step (what `tickSpace` must make room for). */
export function widestClockLabel(stepS: number): string {
    return stepS >= 60 ? '88:88' : '88:88:88';
}
