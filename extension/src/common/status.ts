// The daemon's state and how it reads to the user (status bar, views). No `vscode` import.
import type { VersionResult } from '../protocol';
import { Commands } from './constants';

export type ServerState = 'starting' | 'ready' | 'restarting' | 'stopped' | 'error';

export interface ServerStatus {
    state: ServerState;
    /** Why the daemon is not running (states other than ready). */
    reason?: string;
    /** The daemon's `deepdive/version` answer (ready only). */
    version?: VersionResult;
    python?: string;
}

export interface StatusPresentation {
    /** Status bar text, with a codicon. */
    text: string;
    tooltip: string;
    /** What a click runs. */
    command: string;
    isError: boolean;
}

export function presentStatus(status: ServerStatus): StatusPresentation {
    const why = status.reason ? `: ${status.reason}` : '';
    switch (status.state) {
        case 'ready': {
            const v = status.version;
            const tooltip = v
                ? `Deepdive ${v.version} — daemon pid ${v.pid}\nPython ${v.python}${status.python ? ` (${status.python})` : ''}\nClick for the environment report.`
                : 'Deepdive is ready. Click for the environment report.';
            return { text: '$(pulse) Deepdive', tooltip, command: Commands.showEnvironmentReport, isError: false };
        }
        case 'starting':
            return { text: '$(sync~spin) Deepdive: starting', tooltip: 'Starting the Deepdive daemon…', command: Commands.showEnvironmentReport, isError: false };
        case 'restarting':
            return { text: '$(sync~spin) Deepdive: restarting', tooltip: `Restarting the Deepdive daemon${why}`, command: Commands.showEnvironmentReport, isError: false };
        case 'stopped':
            return { text: '$(circle-slash) Deepdive: stopped', tooltip: `The Deepdive daemon is stopped${why}. Click to restart.`, command: Commands.restartServer, isError: false };
        case 'error':
            return { text: '$(error) Deepdive: error', tooltip: `The Deepdive daemon is not running${why}. Click to restart.`, command: Commands.restartServer, isError: true };
    }
}

/** The one line the views show instead of their content while the daemon is not ready. */
export function notRunningLabel(status: ServerStatus): string {
    if (status.state === 'starting' || status.state === 'restarting') {
        return `Deepdive server is ${status.state}…`;
    }
    return `Deepdive server is not running — ${status.reason ?? status.state}`;
}
