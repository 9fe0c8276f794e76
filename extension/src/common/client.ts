// The LanguageClient for `python -m deepdive serve`: its server and client options, nothing else.
import { Disposable } from 'vscode';
import {
    CloseAction,
    ErrorAction,
    LanguageClient,
    LanguageClientOptions,
    RevealOutputChannelOn,
    ServerOptions,
} from 'vscode-languageclient/node';
import { JobEvent, Notifications, TelemetrySummary } from '../protocol';
import { DIAGNOSTICS_SECTION, DISPLAY_NAME } from './constants';
import { logChannel } from './logging';
import { getConfiguration, isTrusted } from './vscodeapi';

export interface ClientHooks {
    /** The daemon's connection closed without us asking (it crashed or was killed). */
    onClosed(): void;
    onJobEvent(event: JobEvent): void;
    onTelemetrySummary(summary: TelemetrySummary): void;
}

/**
 * A client for the daemon; the caller starts it. `cwd` must not be the workspace folder, so that
 * files there cannot shadow the daemon's modules. The returned disposables belong to this client.
 */
/** `deepdive.diagnostics.*` as the daemon reads them: {enabled, disabledRules}. */
export function diagnosticsSettings(): { enabled: boolean; disabledRules: string[] } {
    const c = getConfiguration(DIAGNOSTICS_SECTION);
    const rules = c.get<unknown>('disabledRules', []);
    return {
        enabled: c.get<boolean>('enabled', true) !== false,
        disabledRules: Array.isArray(rules) ? rules.filter((r): r is string => typeof r === 'string') : [],
    };
}

export function createLanguageClient(python: string, cwd: string, hooks: ClientHooks): [LanguageClient, Disposable[]] {
    const serverOptions: ServerOptions = {
        command: python,
        // No `transport`: with TransportKind.stdio the client would append `--stdio` to these args.
        // Without it, it still talks LSP over the process's stdin/stdout.
        args: ['-m', 'deepdive', 'serve'],
        options: { cwd, env: { ...process.env, DEEPDIVE_CLIENT: 'vscode' } },
    };
    const clientOptions: LanguageClientOptions = {
        documentSelector: [{ scheme: 'file', language: 'python' }],
        // A LogOutputChannel: vscode-languageclient 11 then derives the LSP trace from its log level
        // (Trace -> message tracing, anything quieter -> off) and follows onDidChangeLogLevel itself.
        outputChannel: logChannel(),
        revealOutputChannelOn: RevealOutputChannelOn.Never,
        initializationOptions: { trusted: isTrusted(), clientName: 'vscode', diagnostics: diagnosticsSettings() },
        // the daemon gets workspace/didChangeConfiguration with {deepdive: {diagnostics: {enabled, disabledRules}}}
        synchronize: { configurationSection: DIAGNOSTICS_SECTION },
        errorHandler: {
            error: () => ({ action: ErrorAction.Continue, handled: true }),
            closed: () => {
                hooks.onClosed();
                // The server module rebuilds the client itself (fresh interpreter check, version and pid).
                return { action: CloseAction.DoNotRestart, handled: true, message: 'The Deepdive daemon exited.' };
            },
        },
    };
    const client = new LanguageClient('deepdive', DISPLAY_NAME, serverOptions, clientOptions);
    const disposables = [
        client.onNotification(Notifications.jobsEvent, (event: JobEvent) => hooks.onJobEvent(event)),
        client.onNotification(Notifications.telemetrySummary, (s: TelemetrySummary) => hooks.onTelemetrySummary(s)),
    ];
    return [client, disposables];
}
