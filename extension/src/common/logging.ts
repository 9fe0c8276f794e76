// The one "Deepdive" LogOutputChannel, behind free functions. The language client writes to the same
// channel, and its LSP trace follows the channel's log level (see client.ts): no trace setting.
import { LogOutputChannel, window } from 'vscode';
import { DISPLAY_NAME } from './constants';

let channel: LogOutputChannel | undefined;

export function createLogChannel(): LogOutputChannel {
    channel = window.createOutputChannel(DISPLAY_NAME, { log: true });
    return channel;
}

export function logChannel(): LogOutputChannel {
    if (!channel) {
        throw new Error('createLogChannel() must run before the log channel is used');
    }
    return channel;
}

export function traceError(...args: unknown[]): void {
    channel?.error(format(args));
}

export function traceWarn(...args: unknown[]): void {
    channel?.warn(format(args));
}

export function traceInfo(...args: unknown[]): void {
    channel?.info(format(args));
}

export function traceVerbose(...args: unknown[]): void {
    channel?.debug(format(args));
}

function format(args: unknown[]): string {
    return args
        .map((a) => (a instanceof Error ? (a.stack ?? a.message) : typeof a === 'string' ? a : JSON.stringify(a)))
        .join(' ');
}
