// A command body's failure becomes one error message and a 'failed' outcome for callers (tests, API).
import { errorMessage } from './interpreter';
import { traceError } from './logging';
import { window } from 'vscode';

export interface Failed {
    state: 'failed';
    error: string;
}

export async function guardCommand<T>(what: string, fn: () => Promise<T>): Promise<T | Failed> {
    try {
        return await fn();
    } catch (err) {
        traceError(`${what} failed:`, err);
        void window.showErrorMessage(`Deepdive: ${what.toLowerCase()} failed: ${errorMessage(err)}`);
        return { state: 'failed', error: errorMessage(err) };
    }
}
