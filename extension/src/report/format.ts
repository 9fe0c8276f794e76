// Small text helpers shared by the report and the Environment view. No `vscode` import.
import type { DeepCheckSummary } from '../protocol';

/** "No NVIDIA GPU: <reason>", without doubling a prefix the daemon already wrote. */
export function noGpuText(reason: string | null | undefined): string {
    const why = reason?.trim() || 'no reason reported';
    if (/^no nvidia gpu\b/i.test(why)) {
        return why.charAt(0).toUpperCase() + why.slice(1);
    }
    return `No NVIDIA GPU: ${why}`;
}

/** Seconds since the epoch as "YYYY-MM-DD HH:MM:SS UTC". */
export function formatTime(epochSeconds: number): string {
    return new Date(epochSeconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** The deep check's figures, one row per measurement, as the report and the Environment view show them. */
export function deepCheckRows(d: DeepCheckSummary): { device: string; dtype: string; size: string; gflops: string }[] {
    return (d.matmul ?? []).map(m => ({
        device: m.name && m.name !== m.device ? `${m.device} (${m.name})` : m.device,
        dtype: m.dtype,
        size: `${m.size}×${m.size}`,
        gflops: m.gflops >= 100 ? m.gflops.toFixed(0) : m.gflops.toFixed(1),
    }));
}
