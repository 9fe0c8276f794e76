// Runs an action at most once per interval, with the latest state: streamed tokens arrive far faster
// than an editor should redraw a document. No `vscode` import.

export class Throttle {
    private timer: ReturnType<typeof setTimeout> | undefined;
    private last = Number.NEGATIVE_INFINITY;

    constructor(
        private readonly action: () => void,
        private readonly intervalMs: number,
        private readonly now: () => number = Date.now,
    ) {}

    /** Asks for a run: now when the last one was long enough ago, else once at the end of the interval. */
    request(): void {
        if (this.timer !== undefined) {
            return; // a run is already due; it will see the latest state
        }
        const wait = this.last + this.intervalMs - this.now();
        if (wait <= 0) {
            this.run();
            return;
        }
        this.timer = setTimeout(() => this.run(), wait);
    }

    /** Runs now (the final state must show at once) and cancels a pending run. */
    flush(): void {
        this.run();
    }

    private run(): void {
        this.cancel();
        this.last = this.now();
        this.action();
    }

    cancel(): void {
        if (this.timer !== undefined) {
            clearTimeout(this.timer);
            this.timer = undefined;
        }
    }
}
