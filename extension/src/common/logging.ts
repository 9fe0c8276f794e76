// The one "Deepdive" LogOutputChannel, behind free functions. The language client writes to the same
// channel, and its LSP trace level follows the channel's log level (no separate trace setting).
import { Disposable, LogLevel, LogOutputChannel, window } from 'vscode';
import { Trace } from 'vscode-languageclient/node';
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

/** LSP message tracing: Trace log level -> verbose, Debug -> messages, anything quieter -> off. */
export function getLSClientTraceLevel(level: LogLevel): Trace {
    switch (level) {
        case LogLevel.Trace:
            return Trace.Verbose;
        case LogLevel.Debug:
            return Trace.Messages;
        default:
            return Trace.Off;
    }
}

export function onDidChangeLogLevel(listener: (level: LogLevel) => void): Disposable {
    return logChannel().onDidChangeLogLevel(listener);
}

function format(args: unknown[]): string {
    return args
        .map((a) => (a instanceof Error ? (a.stack ?? a.message) : typeof a === 'string' ? a : JSON.stringify(a)))
        .join(' ');
}
