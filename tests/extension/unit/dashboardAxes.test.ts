// Axis labels never overlap: tick spacing from the label width, y axes as wide as their widest label.
import { describe, expect, it } from 'vitest';
import { axisSize, clockLabel, labelsClear, LABEL_GAP_PX, tickCount, tickSpace, widestClockLabel } from '../../../extension/webview/axes';

describe('tick spacing', () => {
    it('puts labels no closer than their width plus a gap, at any chart width', () => {
        for (const labelPx of [20, 47.5, 64, 90]) {
            const space = tickSpace(labelPx);
            expect(space).toBeGreaterThanOrEqual(labelPx + LABEL_GAP_PX);
            for (const axisPx of [120, 236, 300, 640, 1000]) {
                const n = tickCount(axisPx, labelPx);
                // n labels at `space` apart, centred on their ticks, fit the axis and never touch
                const positions = Array.from({ length: n }, (_, i) => labelPx / 2 + i * space);
                expect(labelsClear(positions, positions.map(() => labelPx), LABEL_GAP_PX)).toBe(true);
                expect(n === 1 || positions.at(-1)! + labelPx / 2 <= axisPx + 1).toBe(true);
            }
        }
    });

    it('thins the ticks on a narrow (sidebar) chart and keeps more on a wide one', () => {
        const label = 50;  // "14:02:30" at 11 px
        expect(tickCount(236, label)).toBe(4);
        expect(tickCount(900, label)).toBe(15);
        expect(tickCount(30, label)).toBe(1);
    });

    it('sees overlapping labels as overlapping', () => {
        expect(labelsClear([0, 40], [50, 50])).toBe(false);
        expect(labelsClear([116, 0, 58], [50, 50, 50], LABEL_GAP_PX)).toBe(true);
    });
});

describe('y axis width', () => {
    it('is as wide as its widest label, tick and gap', () => {
        expect(axisSize([31, 58.2, 12], 4, 4)).toBe(69);
        expect(axisSize([], 4, 4)).toBe(24);
    });
});

describe('time labels', () => {
    it('are one line each, minutes or seconds by the tick step, and no longer than the widest form', () => {
        const t = new Date(2026, 2, 14, 9, 5, 30).getTime() / 1000;
        expect(clockLabel(t, 10)).toBe('09:05:30');
        expect(clockLabel(t, 120)).toBe('09:05');
        expect(clockLabel(t, 10).length).toBe(widestClockLabel(10).length);
        expect(clockLabel(t, 120).length).toBe(widestClockLabel(120).length);
    });
});
