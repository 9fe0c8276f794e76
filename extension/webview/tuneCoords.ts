// The Tune view's parallel coordinates (no DOM): one axis per parameter (linear, log or categorical) and
// one for the objective, and each complete trial's position on them, coloured by how good it is.
import { trialsOf } from './tuneQueries';
import type { ParamValue, Study } from './tuneTypes';

export interface Axis {
    name: string;
    kind: 'linear' | 'log' | 'categorical';
    /** linear/log: the range (log: of the values themselves, drawn on a log scale). */
    min: number;
    max: number;
    /** categorical: the categories in axis order (bottom to top). */
    categories: string[];
}

export interface Coords {
    axes: Axis[];
    /** One line per complete trial: the position on each axis in [0, 1] (null: the trial has no such param). */
    lines: { number: number; value: number; pos: (number | null)[]; color: number }[];
}

/** Positive numbers that span this many times from low to high are drawn on a log axis. */
export const LOG_RATIO = 100;

function axisFor(name: string, values: ParamValue[]): Axis {
    const present = values.filter((v): v is number | string | boolean => v !== null);
    if (present.some(v => typeof v !== 'number')) {
        const categories = [...new Set(present.map(String))].sort();
        return { name, kind: 'categorical', min: 0, max: Math.max(0, categories.length - 1), categories };
    }
    const nums = present as number[];
    const min = nums.length ? Math.min(...nums) : 0;
    const max = nums.length ? Math.max(...nums) : 0;
    const kind = min > 0 && max / min >= LOG_RATIO ? 'log' : 'linear';
    return { name, kind, min, max, categories: [] };
}

/** Where `v` sits on `axis`, in [0, 1] (0.5 when the axis has no extent); null when absent. */
export function position(axis: Axis, v: ParamValue | undefined): number | null {
    if (v === null || v === undefined) {
        return null;
    }
    if (axis.kind === 'categorical') {
        const i = axis.categories.indexOf(String(v));
        if (i < 0) {
            return null;
        }
        return axis.categories.length > 1 ? i / (axis.categories.length - 1) : 0.5;
    }
    if (typeof v !== 'number') {
        return null;
    }
    if (axis.max === axis.min) {
        return 0.5;
    }
    if (axis.kind === 'log') {
        return (Math.log(v) - Math.log(axis.min)) / (Math.log(axis.max) - Math.log(axis.min));
    }
    return (v - axis.min) / (axis.max - axis.min);
}

/**
 * Parallel coordinates of the complete trials: one axis per param (sorted by name) and a last one for
 * the objective value; `color` in [0, 1] is how good the trial is (1: the best, 0: the worst).
 */
export function parallelCoords(s: Study): Coords {
    const done = trialsOf(s).filter(t => t.state === 'complete' && t.value !== null);
    const names = [...new Set(done.flatMap(t => Object.keys(t.params)))].sort();
    const axes = names.map(n => axisFor(n, done.map(t => t.params[n] ?? null)));
    const valueAxis = axisFor(s.metric || 'value', done.map(t => t.value));
    if (valueAxis.kind === 'log') {
        valueAxis.kind = 'linear';  // the objective stays linear: the colour scale reads it that way too
    }
    axes.push(valueAxis);
    const lines = done.map(t => {
        const pos = names.map((n, i) => position(axes[i], t.params[n]));
        const vp = position(valueAxis, t.value) ?? 0.5;
        pos.push(vp);
        const color = valueAxis.max === valueAxis.min ? 1 : s.direction === 'maximize' ? vp : 1 - vp;
        return { number: t.number, value: t.value as number, pos, color };
    });
    return { axes, lines };
}
