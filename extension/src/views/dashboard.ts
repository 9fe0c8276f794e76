// The dashboard: the sidebar WebviewView and the "Deepdive: Open Dashboard" editor panel, both showing the
// hub's page (out/webview) told the hub's /stream URL from `deepdive/hub`. Re-rendered whenever the daemon's
// status changes: the hub's port and token are new at each daemon start.
// The page talks back with two messages: `ready` (it loaded: the section asked for by `reveal` is sent to it)
// and `open` (a finding's file:line link in the Diagnosis section: opened only for a file inside the workspace).
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';
import {
    CancellationToken,
    Disposable,
    env,
    Range,
    Uri,
    ViewColumn,
    Webview,
    WebviewPanel,
    WebviewView,
    WebviewViewProvider,
    WebviewViewResolveContext,
    window,
} from 'vscode';
import { Views } from '../common/constants';
import { getWorkspaceFolders } from '../common/vscodeapi';
import { errorMessage } from '../common/interpreter';
import { traceError, traceInfo } from '../common/logging';
import { DeepdiveServer } from '../common/server';
import { ServerStatus } from '../common/status';
import { Requests } from '../protocol';
import { DashboardPage, hubOrigin, pageBody, pageForHub, renderPage } from './dashboardHtml';

const PANEL_TYPE = 'deepdive.dashboardPanel';

function nonce(): string {
    return randomBytes(16).toString('hex');
}

function pageForStatus(s: ServerStatus): DashboardPage {
    switch (s.state) {
        case 'starting':
        case 'restarting':
            return { kind: 'message', title: `The Deepdive daemon is ${s.state}…`, detail: s.reason ?? undefined };
        default:
            return { kind: 'message', title: `The Deepdive daemon is not running (${s.state}).`, detail: s.reason ? `Reason: ${s.reason}` : undefined };
    }
}

export class DashboardViews implements WebviewViewProvider, Disposable {
    private readonly root: Uri;
    private view: WebviewView | undefined;
    private panel: WebviewPanel | undefined;
    private page: DashboardPage = { kind: 'message', title: 'Connecting to the Deepdive daemon…' };
    /** Bumped per status change so an older `deepdive/hub` answer never overwrites a newer page. */
    private generation = 0;
    private body: Promise<string | undefined> | undefined;
    private readonly disposables: Disposable[] = [];
    /** The section a page scrolls to once it says it is ready (the panel may still be loading when asked). */
    private pendingReveal: string | undefined;

    constructor(private readonly server: DeepdiveServer, extensionUri: Uri) {
        this.root = Uri.joinPath(extensionUri, 'out', 'webview');
        this.disposables.push(server.onDidChangeStatus((s) => void this.update(s)));
        void this.update(server.status);
    }

    resolveWebviewView(view: WebviewView, _context: WebviewViewResolveContext, _token: CancellationToken): void {
        this.view = view;
        this.configure(view.webview);
        const messages = this.listen(view.webview, ViewColumn.Active);
        view.onDidDispose(() => {
            messages.dispose();
            if (this.view === view) {
                this.view = undefined;
            }
        });
        void this.render(view.webview);
    }

    /**
     * Opens (or reveals) the dashboard as an editor panel; `beside` (a job's end) opens it next to the editor
     * without taking the focus from it.
     */
    async openPanel(beside = false): Promise<void> {
        if (this.panel) {
            this.panel.reveal(undefined, beside);
            return;
        }
        const where = beside ? { viewColumn: ViewColumn.Beside, preserveFocus: true } : ViewColumn.Active;
        const panel = window.createWebviewPanel(PANEL_TYPE, 'Deepdive Dashboard', where, {
            enableScripts: true,
            retainContextWhenHidden: true,
            localResourceRoots: [this.root],
        });
        this.panel = panel;
        this.configure(panel.webview);
        const messages = this.listen(panel.webview, ViewColumn.Beside);
        panel.onDidDispose(() => {
            messages.dispose();
            if (this.panel === panel) {
                this.panel = undefined;
            }
        });
        await this.render(panel.webview);
    }

    /** Opens the dashboard panel scrolled to a section (`diagnose`: the Diagnosis section). */
    async reveal(section: string): Promise<void> {
        this.pendingReveal = section;
        const existing = this.panel;
        await this.openPanel(true);
        if (existing) {
            this.pendingReveal = undefined;  // already loaded: no `ready` will come
            void existing.webview.postMessage({ type: 'reveal', section });
        }
    }

    /** The page's messages: `ready` gets the pending section; `open` opens a file of the workspace at a line. */
    private listen(webview: Webview, column: ViewColumn): Disposable {
        return webview.onDidReceiveMessage((msg: unknown) => {
            if (!msg || typeof msg !== 'object') {
                return;
            }
            const m = msg as { type?: unknown; file?: unknown; line?: unknown };
            if (m.type === 'ready' && this.pendingReveal && webview === this.panel?.webview) {
                void webview.postMessage({ type: 'reveal', section: this.pendingReveal });
                this.pendingReveal = undefined;
            } else if (m.type === 'open' && typeof m.file === 'string' && typeof m.line === 'number') {
                void openInWorkspace(m.file, m.line, column);
            }
        });
    }

    dispose(): void {
        this.generation++;
        this.panel?.dispose();
        Disposable.from(...this.disposables).dispose();
    }

    /** Fetches the hub's address when the daemon is ready, else shows why not; then re-renders every webview. */
    private async update(status: ServerStatus): Promise<void> {
        const generation = ++this.generation;
        let page: DashboardPage;
        if (status.state === 'ready') {
            try {
                const hub = await this.server.request(Requests.hub, {});
                page = pageForHub(hub, await this.externalHubUri(hub.streamUrl));
            } catch (err) {
                page = { kind: 'message', title: 'The Deepdive daemon did not say where its telemetry hub is.', detail: errorMessage(err) };
            }
        } else {
            page = pageForStatus(status);
        }
        if (generation !== this.generation) {
            return;
        }
        this.page = page;
        traceInfo(page.kind === 'live' ? `Dashboard: hub stream at ${page.origin.origin}` : `Dashboard: ${page.title}`);
        const webviews = [this.view?.webview, this.panel?.webview].filter((w): w is Webview => w !== undefined);
        await Promise.all(webviews.map((w) => this.render(w)));
    }

    /**
     * Where the webview can reach the hub when the UI runs on another machine than the extension host
     * (code-server, Codespaces, Remote-SSH): `env.asExternalUri` forwards the port or returns a proxy URL.
     * Locally it returns the same address. Undefined when there is nothing to map or it fails.
     */
    private async externalHubUri(streamUrl: string | null | undefined): Promise<string | undefined> {
        const port = hubOrigin(streamUrl)?.port;
        if (!port) {
            return undefined;
        }
        try {
            const external = (await env.asExternalUri(Uri.parse(`http://127.0.0.1:${port}/`))).toString(true);
            return external === `http://127.0.0.1:${port}/` ? undefined : external;
        } catch (err) {
            traceError('Dashboard: asExternalUri failed; using the hub\'s loopback address:', err);
            return undefined;
        }
    }

    /** Webview options; the port mapping lets a remote workspace's webview reach the hub on the extension host. */
    private configure(webview: Webview): void {
        const port = this.page.kind === 'live' && this.page.streamUrl.includes('://127.0.0.1:') ? this.page.hubPort : undefined;
        webview.options = {
            enableScripts: true,
            localResourceRoots: [this.root],
            portMapping: port ? [{ webviewPort: port, extensionHostPort: port }] : [],
        };
    }

    private readBody(): Promise<string | undefined> {
        this.body ??= fs.readFile(Uri.joinPath(this.root, 'index.html').fsPath, 'utf8').then(pageBody, (err) => {
            traceError('Dashboard: cannot read out/webview/index.html:', err);
            this.body = undefined;
            return undefined;
        });
        return this.body;
    }

    private async render(webview: Webview): Promise<void> {
        const page = this.page;
        const body = page.kind === 'live' ? await this.readBody() : undefined;
        if (page !== this.page) {
            return; // a newer page is being rendered
        }
        this.configure(webview);
        webview.html = renderPage(page, body, {
            cspSource: webview.cspSource,
            scriptUri: webview.asWebviewUri(Uri.joinPath(this.root, 'dashboard.js')).toString(),
            styleUri: webview.asWebviewUri(Uri.joinPath(this.root, 'dashboard.css')).toString(),
        }, nonce());
    }
}

/** Opens `file` at the 1-based `line`, only when it lies inside a workspace folder (the page is not trusted to name others). */
async function openInWorkspace(file: string, line: number, column: ViewColumn): Promise<void> {
    const abs = path.resolve(file);
    const inside = getWorkspaceFolders().some((f) => {
        const rel = path.relative(f.uri.fsPath, abs);
        return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
    });
    if (!inside) {
        void window.showWarningMessage(`Deepdive: the dashboard asked to open ${abs}, which is outside the workspace: not opened.`);
        return;
    }
    const at = Math.max(0, Math.floor(line) - 1);
    try {
        await window.showTextDocument(Uri.file(abs), { selection: new Range(at, 0, at, 0), viewColumn: column, preview: false });
    } catch (err) {
        traceError(`Dashboard: opening ${abs}:${line} failed:`, err);
        void window.showErrorMessage(`Deepdive: cannot open ${path.basename(abs)}: ${errorMessage(err)}`);
    }
}

export function registerDashboard(views: DashboardViews): Disposable {
    return window.registerWebviewViewProvider(Views.dashboard, views);
}
