import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Debouncer, DEFAULT_BACKOFF, RestartBackoff } from '../../../extension/src/common/restartPolicy';

describe('RestartBackoff', () => {
    it('backs off 0.5, 1, 2, 4, 8 s and gives up after 5 restarts in 3 minutes', () => {
        let now = 0;
        const b = new RestartBackoff(DEFAULT_BACKOFF, () => now);
        const delays = [];
        for (let i = 0; i < 5; i++) {
            delays.push(b.next());
            now += 1_000;
        }
        expect(delays).toEqual([500, 1000, 2000, 4000, 8000]);
        expect(b.next()).toBeUndefined();
        expect(b.recentRestarts).toBe(5);
    });

    it('forgets restarts older than the window', () => {
        let now = 0;
        const b = new RestartBackoff(DEFAULT_BACKOFF, () => now);
        for (let i = 0; i < 5; i++) {
            b.next();
        }
        expect(b.next()).toBeUndefined();
        now += 3 * 60_000;
        expect(b.next()).toBe(500);
    });

    it('caps the delay', () => {
        const b = new RestartBackoff({ maxRestarts: 10, windowMs: 1e9, baseDelayMs: 500, maxDelayMs: 3000 }, () => 0);
        const delays = Array.from({ length: 6 }, () => b.next());
        expect(delays).toEqual([500, 1000, 2000, 3000, 3000, 3000]);
    });

    it('reset() gives a fresh budget (a restart the user asked for)', () => {
        const b = new RestartBackoff(DEFAULT_BACKOFF, () => 0);
        for (let i = 0; i < 5; i++) {
            b.next();
        }
        b.reset();
        expect(b.next()).toBe(500);
    });

    it('restarts a killed daemon well within 10 s', () => {
        expect(new RestartBackoff().next()).toBeLessThan(10_000);
    });
});

describe('Debouncer', () => {
    beforeEach(() => {
        vi.useFakeTimers();
    });
    afterEach(() => {
        vi.useRealTimers();
    });

    it('coalesces a burst into one call, after the last trigger', () => {
        const fn = vi.fn();
        const d = new Debouncer(300, fn);
        d.trigger();
        vi.advanceTimersByTime(200);
        d.trigger();
        vi.advanceTimersByTime(200);
        expect(fn).not.toHaveBeenCalled();
        expect(d.pending).toBe(true);
        vi.advanceTimersByTime(100);
        expect(fn).toHaveBeenCalledTimes(1);
        expect(d.pending).toBe(false);
    });

    it('calls again for a later burst', () => {
        const fn = vi.fn();
        const d = new Debouncer(300, fn);
        d.trigger();
        vi.advanceTimersByTime(300);
        d.trigger();
        vi.advanceTimersByTime(300);
        expect(fn).toHaveBeenCalledTimes(2);
    });

    it('cancel() drops a pending call', () => {
        const fn = vi.fn();
        const d = new Debouncer(300, fn);
        d.trigger();
        d.cancel();
        vi.advanceTimersByTime(1000);
        expect(fn).not.toHaveBeenCalled();
    });
});
