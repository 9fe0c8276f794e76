// When to restart the daemon: a bounded exponential backoff with a cap per time window, and a
// debounce that coalesces bursts of restart requests. Pure timing logic; no `vscode` import.

export interface BackoffOptions {
    /** Automatic restarts allowed inside `windowMs`; one more and we give up. */
    maxRestarts: number;
    windowMs: number;
    baseDelayMs: number;
    maxDelayMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
    maxRestarts: 5,
    windowMs: 3 * 60_000,
    baseDelayMs: 500,
    maxDelayMs: 8_000,
};

/**
 * Decides how long to wait before restarting a daemon that died: 0.5 s, 1 s, 2 s, 4 s, 8 s for the
 * restarts inside one window, and `undefined` (stop trying) past the cap.
 */
export class RestartBackoff {
    private attempts: number[] = [];

    constructor(
        private readonly options: BackoffOptions = DEFAULT_BACKOFF,
        private readonly now: () => number = Date.now,
    ) {}

    /** Records an automatic restart and returns its delay, or undefined when the cap is reached. */
    next(): number | undefined {
        const t = this.now();
        this.attempts = this.attempts.filter((a) => t - a < this.options.windowMs);
        if (this.attempts.length >= this.options.maxRestarts) {
            return undefined;
        }
        const delay = Math.min(this.options.baseDelayMs * 2 ** this.attempts.length, this.options.maxDelayMs);
        this.attempts.push(t);
        return delay;
    }

    /** A restart the user asked for starts a fresh budget. */
    reset(): void {
        this.attempts = [];
    }

    get recentRestarts(): number {
        return this.attempts.length;
    }
}

/** Calls `fn` once, `delayMs` after the last of a burst of `trigger()` calls. */
export class Debouncer {
    private timer: ReturnType<typeof setTimeout> | undefined;

    constructor(
        private readonly delayMs: number,
        private readonly fn: () => void,
    ) {}

    trigger(): void {
        this.cancel();
        this.timer = setTimeout(() => {
            this.timer = undefined;
            this.fn();
        }, this.delayMs);
    }

    get pending(): boolean {
        return this.timer !== undefined;
    }

    cancel(): void {
        if (this.timer !== undefined) {
            clearTimeout(this.timer);
            this.timer = undefined;
        }
    }
}
