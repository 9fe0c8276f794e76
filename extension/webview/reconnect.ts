// Where the dashboard's websocket connects and how it reconnects (no DOM): the /stream URL (the page's
// host and token, or the configured one), the backoff before each retry and the connection's state in
// words. connection.ts does the connecting.
import { fmtSeconds } from './format';

export interface Config {
    streamUrl?: string;
}

/**
 * The /stream websocket URL: `config.streamUrl` when given, else the page's own host with path /stream
 * and the page URL's `?token=` (without one, the cookie the hub set when it served the page is the token).
 */
export function streamUrl(location: { protocol: string; host: string; search: string }, config?: Config | null): string {
    if (config && typeof config.streamUrl === 'string' && config.streamUrl) {
        return config.streamUrl;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const token = new URLSearchParams(location.search).get('token');
    return `${scheme}//${location.host}/stream${token ? `?token=${encodeURIComponent(token)}` : ''}`;
}

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 15000;

/**
 * Delay before reconnect attempt number `attempt` (0 = the first after a loss): exponential from
 * BACKOFF_BASE_MS, capped at BACKOFF_MAX_MS, with "equal jitter" (half fixed, half random) so that many
 * pages do not reconnect in lockstep. `random` in [0, 1).
 */
export function backoffDelay(attempt: number, random: number = Math.random()): number {
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, Math.min(attempt, 30)));
    return Math.round(exp / 2 + (exp / 2) * Math.min(Math.max(random, 0), 1));
}

export type ConnState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export function connectionLabel(state: ConnState, retryInMs: number | null, lastError: string | null): string {
    switch (state) {
        case 'connecting':
            return 'connecting…';
        case 'open':
            return 'live';
        case 'reconnecting':
            return `disconnected${lastError ? ` (${lastError})` : ''}; retrying in ${fmtSeconds((retryInMs ?? 0) / 1000)}`;
        case 'closed':
            return `closed${lastError ? ` (${lastError})` : ''}`;
    }
}
