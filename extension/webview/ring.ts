// A bounded series of (t, value) points, the storage behind every dashboard chart, and uPlot's aligned
// data for several of them. model.ts keeps one per charted field of a run, a GPU and the host.

/** A bounded series of (t, value) points: the oldest point goes when a new one arrives at capacity. */
export class Ring {
    private readonly t: Float64Array;
    private readonly v: Float64Array;
    private start = 0;
    private count = 0;

    constructor(readonly capacity: number) {
        if (!(capacity >= 1)) {
            throw new RangeError(`ring capacity must be at least 1, got ${capacity}`);
        }
        this.t = new Float64Array(capacity);
        this.v = new Float64Array(capacity);
    }

    get length(): number {
        return this.count;
    }

    /** Appends a point; a value that is not a finite number is stored as a gap (NaN, drawn as null). */
    push(t: number, value: number | null | undefined): void {
        const i = (this.start + this.count) % this.capacity;
        this.t[i] = t;
        this.v[i] = typeof value === 'number' && Number.isFinite(value) ? value : NaN;
        if (this.count < this.capacity) {
            this.count++;
        } else {
            this.start = (this.start + 1) % this.capacity;
        }
    }

    times(): number[] {
        const out = new Array<number>(this.count);
        for (let k = 0; k < this.count; k++) {
            out[k] = this.t[(this.start + k) % this.capacity];
        }
        return out;
    }

    values(): (number | null)[] {
        const out = new Array<number | null>(this.count);
        for (let k = 0; k < this.count; k++) {
            const x = this.v[(this.start + k) % this.capacity];
            out[k] = Number.isNaN(x) ? null : x;
        }
        return out;
    }

    /** The newest point with a value, or null. */
    last(): { t: number; v: number } | null {
        for (let k = this.count - 1; k >= 0; k--) {
            const i = (this.start + k) % this.capacity;
            if (!Number.isNaN(this.v[i])) {
                return { t: this.t[i], v: this.v[i] };
            }
        }
        return null;
    }

    /** Points that carry a value (gaps not counted). */
    pointCount(): number {
        let n = 0;
        for (let k = 0; k < this.count; k++) {
            if (!Number.isNaN(this.v[(this.start + k) % this.capacity])) {
                n++;
            }
        }
        return n;
    }

    clear(): void {
        this.start = 0;
        this.count = 0;
    }
}

/** uPlot's aligned data for several rings: the sorted union of their times, null where a ring has no point. */
export function align(rings: Ring[]): [number[], ...(number | null)[][]] {
    const all = rings.map(r => ({ t: r.times(), v: r.values() }));
    const times = [...new Set(all.flatMap(a => a.t))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const columns = all.map(a => {
        const col = new Array<number | null>(times.length).fill(null);
        a.t.forEach((t, k) => {
            col[index.get(t)!] = a.v[k];
        });
        return col;
    });
    return [times, ...columns];
}
