// The arithmetic of a job's progress notification. No `vscode` import: unit tests load this.

/** What the notification shows for one progress event: the increment to add and the message. */
export function progressStep(shownPercent: number, fraction: number | null | undefined, message: string | null | undefined):
    { increment: number; message?: string } {
    const target = typeof fraction === 'number' && Number.isFinite(fraction) ? Math.min(100, Math.max(0, 100 * fraction)) : shownPercent;
    return { increment: Math.max(0, target - shownPercent), message: message ?? undefined };
}
