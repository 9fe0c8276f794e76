// Colours as numbers (no DOM): a theme colour parsed from its CSS text, and a blend of two by a value in
// [0, 1]. The Tune view's parallel coordinates colour each trial's line this way.

/** `#rgb`, `#rrggbb`, `#rrggbbaa`, `rgb(r, g, b)` or `rgba(...)` as [r, g, b]; null for anything else. */
export function parseColor(css: string): [number, number, number] | null {
    const s = css.trim();
    let m = /^#([0-9a-f]{3})$/i.exec(s);
    if (m) {
        return [0, 1, 2].map(i => parseInt(m![1][i] + m![1][i], 16)) as [number, number, number];
    }
    m = /^#([0-9a-f]{6})(?:[0-9a-f]{2})?$/i.exec(s);
    if (m) {
        return [0, 2, 4].map(i => parseInt(m![1].slice(i, i + 2), 16)) as [number, number, number];
    }
    m = /^rgba?\(\s*([\d.]+)[\s,]+([\d.]+)[\s,]+([\d.]+)/i.exec(s);
    if (m) {
        return [Number(m[1]), Number(m[2]), Number(m[3])].map(x => Math.round(Math.min(255, x))) as [number, number, number];
    }
    return null;
}

/** The colour `f` of the way from `a` to `b` (f in [0, 1]) as `rgb(...)`. */
export function mixColor(a: [number, number, number], b: [number, number, number], f: number): string {
    const k = Math.min(1, Math.max(0, Number.isFinite(f) ? f : 0));
    const c = a.map((x, i) => Math.round(x + (b[i] - x) * k));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}
