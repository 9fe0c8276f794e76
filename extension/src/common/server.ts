// Builds, starts, restarts and stops the LanguageClient that runs `python -m deepdive serve`.
import { promises as fs } from 'fs';
import { randomUUID } from 'crypto';
import { CancellationToken, Disposable, EventEmitter, ExtensionContext, window } from 'vscode';
import { LanguageClient, ProgressType, WorkDoneProgress, WorkDoneProgressBegin, WorkDoneProgressEnd, WorkDoneProgressReport } from 'vscode-languageclient/node';
import { JobEvent, Requests, RequestTypes, TelemetrySummary, VersionResult } from '../protocol';
import { ServerStatus } from './status';
import { createLanguageClient } from './client';
import { IMPORT_CHECK_TIMEOUT_MS } from './constants';
import { checkDeepdiveImport, errorMessage, nodeExec } from './interpreter';
import { logChannel, traceError, traceInfo, traceVerbose, traceWarn } from './logging';
import { offerInterpreterFix, resolveInterpreter } from './python';
import { Debouncer, RestartBackoff } from './restartPolicy';

/** Restart requests closer together than this collapse into one restart. */
const RESTART_DEBOUNCE_MS = 300;
/** How long a request waits for a (re)starting daemon. */
const REQUEST_WAIT_MS = 30_000;

export class DeepdiveServer implements Disposable {
    private client: LanguageClient | undefined;
    private clientStart: Promise<void> | undefined;
    private clientDisposables: Disposable[] = [];
    /** Bumped for each client, so events from a replaced client are ignored. */
    private generation = 0;
    private current: ServerStatus = { state: 'starting' };
    private restarting = false;
    private restartQueued = false;
    private autoRestartTimer: NodeJS.Timeout | undefined;
    private disposed = false;
    private readonly backoff = new RestartBackoff();
    private readonly debouncer = new Debouncer(RESTART_DEBOUNCE_MS, () => void this.runRestart());
    private readonly statusEmitter = new EventEmitter<ServerStatus>();
    private readonly jobEventEmitter = new EventEmitter<JobEvent>();
    private readonly telemetryEmitter = new EventEmitter<TelemetrySummary>();

    readonly onDidChangeStatus = this.statusEmitter.event;
    /** `deepdive/jobs/event` notifications, across client restarts. */
    readonly onJobEvent = this.jobEventEmitter.event;
    /** `deepdive/telemetry/summary` notifications (about once a second), across client restarts. */
    readonly onTelemetrySummary = this.telemetryEmitter.event;

    constructor(private readonly context: ExtensionContext) {}

    get status(): ServerStatus {
        return this.current;
    }

    /** First start: not debounced. */
    start(): Promise<void> {
        return this.runRestart();
    }

    /** Asks for a restart; a burst of requests gives one restart. `manual` also resets the crash budget. */
    restart(why: string, manual = false): void {
        traceInfo(`Restart requested: ${why}`);
        if (manual) {
            this.backoff.reset();
        }
        this.debouncer.trigger();
    }

    /** Resolves once the daemon answers; rejects if it ends up stopped or failed. */
    ready(): Promise<void> {
        if (this.current.state === 'ready') {
            return Promise.resolve();
        }
        return new Promise((resolve, reject) => {
            const sub = this.onDidChangeStatus((s) => {
                if (s.state === 'ready') {
                    sub.dispose();
                    resolve();
                } else if (s.state === 'error' || s.state === 'stopped') {
                    sub.dispose();
                    reject(new Error(`Deepdive server is not running — ${s.reason ?? s.state}`));
                }
            });
        });
    }

    /**
     * A typed custom request. While the daemon is (re)starting it waits for it, up to
     * REQUEST_WAIT_MS; when the daemon is stopped or failed it fails at once, with the reason.
     */
    async request<M extends keyof RequestTypes>(method: M, params: RequestTypes[M]['params']): Promise<RequestTypes[M]['result']> {
        const client = await this.readyClient();
        return client.sendRequest<RequestTypes[M]['result']>(method, params);
    }

    /**
     * A typed custom request with LSP partial results and work-done progress: fresh tokens go into
     * the params as `partialResultToken` / `workDoneToken`, and the daemon's `$/progress` values on
     * them reach `onPartial` / `onWorkDone` until the request settles. `token` cancels it
     * (`$/cancelRequest`). Waits for a (re)starting daemon like `request`.
     */
    async requestWithProgress<M extends keyof RequestTypes, P>(
        method: M,
        params: RequestTypes[M]['params'],
        options: {
            onPartial?: (value: P) => void;
            onWorkDone?: (value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd) => void;
            token?: CancellationToken;
        },
    ): Promise<RequestTypes[M]['result']> {
        const client = await this.readyClient();
        const partialResultToken = `deepdive-partial-${randomUUID()}`;
        const workDoneToken = `deepdive-work-${randomUUID()}`;
        const handlers: Disposable[] = [];
        if (options.onPartial) {
            const onPartial = options.onPartial;
            handlers.push(client.onProgress(new ProgressType<P>(), partialResultToken, (v) => onPartial(v)));
        }
        if (options.onWorkDone) {
            handlers.push(client.onProgress(WorkDoneProgress.type, workDoneToken, options.onWorkDone));
        }
        const full = { ...params, ...(options.onPartial ? { partialResultToken } : {}), ...(options.onWorkDone ? { workDoneToken } : {}) };
        try {
            return await client.sendRequest<RequestTypes[M]['result']>(method, full, options.token);
        } finally {
            Disposable.from(...handlers).dispose();
        }
    }

    /** The running client's converter of LSP JSON to editor types (a WorkspaceEdit a command got from the daemon). */
    async protocolConverter(): Promise<LanguageClient['protocol2CodeConverter']> {
        return (await this.readyClient()).protocol2CodeConverter;
    }

    private async readyClient(): Promise<LanguageClient> {
        if (this.current.state === 'starting' || this.current.state === 'restarting') {
            let timer: NodeJS.Timeout | undefined;
            const timeout = new Promise<never>((_, reject) => {
                timer = setTimeout(() => reject(new Error(`the Deepdive server did not become ready within ${REQUEST_WAIT_MS / 1000} s`)), REQUEST_WAIT_MS);
            });
            await Promise.race([this.ready(), timeout]).finally(() => clearTimeout(timer));
        }
        if (!this.client || this.current.state !== 'ready') {
            throw new Error(`Deepdive server is not running — ${this.current.reason ?? this.current.state}`);
        }
        return this.client;
    }

    async dispose(): Promise<void> {
        this.disposed = true;
        this.debouncer.cancel();
        clearTimeout(this.autoRestartTimer);
        await this.stopClient();
        this.setStatus({ state: 'stopped', reason: 'the extension was deactivated' });
        this.statusEmitter.dispose();
        this.jobEventEmitter.dispose();
        this.telemetryEmitter.dispose();
    }

    private setStatus(status: ServerStatus): void {
        this.current = status;
        if (!this.disposed || status.state === 'stopped') {
            this.statusEmitter.fire(status);
        }
    }

    private async runRestart(): Promise<void> {
        if (this.restarting) {
            this.restartQueued = true;
            return;
        }
        this.restarting = true;
        clearTimeout(this.autoRestartTimer);
        this.autoRestartTimer = undefined;
        try {
            do {
                this.restartQueued = false;
                const wasRunning = this.client !== undefined;
                await this.stopClient();
                if (this.disposed) {
                    return;
                }
                this.setStatus({ state: wasRunning ? 'restarting' : 'starting' });
                await this.startClient();
            } while (this.restartQueued && !this.disposed);
        } finally {
            this.restarting = false;
        }
    }

    private async stopClient(): Promise<void> {
        const client = this.client;
        const started = this.clientStart;
        this.client = undefined;
        this.clientStart = undefined;
        this.generation++;
        Disposable.from(...this.clientDisposables).dispose();
        this.clientDisposables = [];
        if (!client) {
            return;
        }
        try {
            await started?.catch(() => undefined);
            await client.stop();
        } catch (err) {
            traceVerbose(`Stopping the previous client: ${errorMessage(err)}`);
        }
    }

    private async startClient(): Promise<void> {
        const generation = this.generation;
        const storage = this.context.globalStorageUri.fsPath;
        let python: string | undefined;
        try {
            await fs.mkdir(storage, { recursive: true });
            python = (await resolveInterpreter()).path;
            const check = await checkDeepdiveImport(python, nodeExec, { cwd: storage, timeoutMs: IMPORT_CHECK_TIMEOUT_MS });
            if (!check.ok) {
                traceError(check.reason);
                this.setStatus({ state: 'error', reason: check.reason, python });
                void offerInterpreterFix(python, check, this.context).then((installed) => {
                    if (installed) {
                        this.restart('deepdive was installed', true);
                    }
                });
                return;
            }
            traceInfo(`deepdive ${check.version} found for ${python}; starting the daemon`);
            const [client, disposables] = createLanguageClient(python, storage, {
                onClosed: () => {
                    if (generation === this.generation && !this.disposed) {
                        this.onDaemonExit();
                    }
                },
                onJobEvent: (event) => this.jobEventEmitter.fire(event),
                onTelemetrySummary: (summary) => this.telemetryEmitter.fire(summary),
            });
            this.client = client;
            this.clientDisposables = disposables;
            this.clientStart = client.start();
            await this.clientStart;
            const version = await client.sendRequest<VersionResult>(Requests.version, {});
            if (generation === this.generation) {
                traceInfo(`Daemon ready: deepdive ${version.version}, pid ${version.pid}, python ${version.python}`);
                this.setStatus({ state: 'ready', version, python });
            }
        } catch (err) {
            if (generation !== this.generation) {
                return;
            }
            const reason = `the daemon did not start: ${errorMessage(err)}`;
            traceError(reason);
            if (this.autoRestartTimer === undefined) {
                this.setStatus({ state: 'error', reason, python });
            }
        }
    }

    private onDaemonExit(): void {
        const delay = this.backoff.next();
        if (delay === undefined) {
            const reason = `the daemon exited ${this.backoff.recentRestarts + 1} times within 3 minutes; not restarting it again`;
            traceError(reason);
            this.setStatus({ state: 'error', reason, python: this.current.python });
            void window.showErrorMessage(`Deepdive: ${reason}.`, 'Restart', 'Show Log').then((choice) => {
                if (choice === 'Restart') {
                    this.restart('user asked after repeated crashes', true);
                } else if (choice === 'Show Log') {
                    logChannel().show();
                }
            });
            return;
        }
        traceWarn(`The daemon exited; restarting it in ${delay} ms`);
        this.setStatus({ state: 'restarting', reason: 'the daemon exited', python: this.current.python });
        clearTimeout(this.autoRestartTimer);
        this.autoRestartTimer = setTimeout(() => {
            this.autoRestartTimer = undefined;
            void this.runRestart();
        }, delay);
    }
}
