// Small text helpers shared by the report and the Environment view. No `vscode` import.

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
