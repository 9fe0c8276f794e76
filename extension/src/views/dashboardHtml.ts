// The dashboard webview's HTML, built from the hub's address: pure (no `vscode` import), so unit tests load it.
// The page is out/webview's bundle (dashboard.js + dashboard.css) with a strict CSP: scripts only with this
// render's nonce, styles only from the extension, and `connect-src` exactly the hub's websocket origin.
import type { HubInfo } from '../protocol';

/** The webview resources the page needs, already turned into webview URIs. */
export interface DashboardResources {
    /** `webview.cspSource`. */
    cspSource: string;
    scriptUri: string;
    styleUri: string;
}

/** The hub's websocket origin (`ws://127.0.0.1:PORT`) and port, from its stream URL; undefined when unusable. */
export interface HubOrigin {
    origin: string;
    port: number;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export function hubOrigin(streamUrl: string | null | undefined, mapped = false): HubOrigin | undefined {
    if (!streamUrl) {
        return undefined;
    }
    let url: URL;
    try {
        url = new URL(streamUrl);
    } catch {
        return undefined;
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
        return undefined;
    }
    if (mapped) {
        // the editor's port forwarding or proxy: any host, the port may be implicit
        return { origin: `${url.protocol}//${url.host}`, port: Number(url.port) || (url.protocol === 'wss:' ? 443 : 80) };
    }
    if (!LOOPBACK.has(url.hostname) || !url.port) {
        return undefined;
    }
    const port = Number(url.port);
    return { origin: `${url.protocol}//${url.host}`, port };
}

/**
 * The stream URL as the webview must use it when the editor's UI runs elsewhere (code-server in a
 * browser, Codespaces, Remote-SSH): `external` is what `env.asExternalUri` made of `http://127.0.0.1:PORT/`
 * (a forwarded port or a proxy URL); its host (and path prefix) replace the hub's, https becomes wss, the
 * path and token stay. Without `external`, or when it cannot be parsed, the URL is unchanged.
 */
export function externalStreamUrl(streamUrl: string, external: string | undefined): string {
    if (!external) {
        return streamUrl;
    }
    let src: URL;
    let ext: URL;
    try {
        src = new URL(streamUrl);
        ext = new URL(external);
    } catch {
        return streamUrl;
    }
    if (ext.protocol !== 'http:' && ext.protocol !== 'https:') {
        return streamUrl;
    }
    const scheme = ext.protocol === 'https:' ? 'wss:' : 'ws:';
    const prefix = ext.pathname.replace(/\/+$/, '');
    return `${scheme}//${ext.host}${prefix}${src.pathname}${src.search}`;
}

/** Escapes text for an HTML text node or a double-quoted attribute. */
export function escapeHtml(text: string): string {
    return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** JSON that is safe inside an inline <script>: no `</script>`, no `<!--`, no line separators. */
export function scriptJson(value: unknown): string {
    return JSON.stringify(value)
        .replace(/</g, '\\u003c')
        .replace(/>/g, '\\u003e')
        .replace(/&/g, '\\u0026')
        .replace(/\u2028/g, '\\u2028')
        .replace(/\u2029/g, '\\u2029');
}

/** The markup inside out/webview/index.html's <body> (the element ids dashboard.js renders into). */
export function pageBody(indexHtml: string): string | undefined {
    const m = /<body[^>]*>([\s\S]*)<\/body>/i.exec(indexHtml);
    const body = m?.[1].trim();
    return body ? body : undefined;
}

function csp(parts: Record<string, string>): string {
    return Object.entries(parts).map(([k, v]) => `${k} ${v}`).join('; ');
}

function head(title: string, policy: string, styleUri: string): string {
    return [
        '<!DOCTYPE html>',
        '<html lang="en">',
        '<head>',
        '<meta charset="utf-8">',
        `<meta http-equiv="Content-Security-Policy" content="${escapeHtml(policy)}">`,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        `<title>${escapeHtml(title)}</title>`,
        `<link rel="stylesheet" href="${escapeHtml(styleUri)}">`,
    ].join('\n');
}

/** The live page: the dashboard bundle, told where the hub's /stream is. */
export function dashboardHtml(streamUrl: string, origin: HubOrigin, body: string, res: DashboardResources, nonce: string): string {
    const policy = csp({
        'default-src': "'none'",
        'script-src': `'nonce-${nonce}'`,
        'style-src': res.cspSource,
        'img-src': `${res.cspSource} data:`,
        'font-src': res.cspSource,
        'connect-src': origin.origin,
    });
    return [
        head('Deepdive dashboard', policy, res.styleUri),
        `<script nonce="${nonce}">window.DEEPDIVE_CONFIG = ${scriptJson({ streamUrl })};</script>`,
        `<script nonce="${nonce}" defer src="${escapeHtml(res.scriptUri)}"></script>`,
        '</head>',
        '<body>',
        body,
        '</body>',
        '</html>',
    ].join('\n');
}

/** A page without script that says why there is no dashboard (hub stopped, daemon down, starting). */
export function messageHtml(title: string, detail: string | undefined, res: DashboardResources): string {
    const policy = csp({
        'default-src': "'none'",
        'style-src': res.cspSource,
        'img-src': `${res.cspSource} data:`,
    });
    return [
        head('Deepdive dashboard', policy, res.styleUri),
        '</head>',
        '<body>',
        '<header class="top"><h1>Deepdive</h1></header>',
        '<main class="grid">',
        '<section class="panel" aria-live="polite">',
        `<h2 class="dashboard-message">${escapeHtml(title)}</h2>`,
        detail ? `<p class="empty">${escapeHtml(detail)}</p>` : '',
        '</section>',
        '</main>',
        '</body>',
        '</html>',
    ].join('\n');
}

/** What the view shows. */
export type DashboardPage =
    | { kind: 'live'; streamUrl: string; origin: HubOrigin; /** the hub's own port on the extension host */ hubPort: number }
    | { kind: 'message'; title: string; detail?: string };

/** Decides from the hub's answer: a live page when it runs on loopback, else the reason it does not. */
export function pageForHub(hub: HubInfo, external?: string): DashboardPage {
    if (!hub.running) {
        return {
            kind: 'message',
            title: 'The Deepdive telemetry hub is not running.',
            detail: hub.reason ? `Reason: ${hub.reason}` : 'The daemon did not say why.',
        };
    }
    const origin = hubOrigin(hub.streamUrl);
    if (!hub.streamUrl || !origin) {
        return {
            kind: 'message',
            title: 'The Deepdive telemetry hub gave no usable address.',
            detail: `Stream URL: ${hub.streamUrl ? hub.streamUrl.split('?')[0] : '(none)'} (a loopback ws:// URL with a port is needed).`,
        };
    }
    const streamUrl = externalStreamUrl(hub.streamUrl, external);
    const mappedOrigin = streamUrl === hub.streamUrl ? origin : hubOrigin(streamUrl, true);
    if (!mappedOrigin) {
        return { kind: 'live', streamUrl: hub.streamUrl, origin, hubPort: origin.port };
    }
    return { kind: 'live', streamUrl, origin: mappedOrigin, hubPort: origin.port };
}

/** The whole HTML of a page. `body` is index.html's body (undefined when the bundle is missing). */
export function renderPage(page: DashboardPage, body: string | undefined, res: DashboardResources, nonce: string): string {
    if (page.kind === 'live') {
        if (!body) {
            return messageHtml('The dashboard page is missing from the extension.', 'out/webview/index.html was not found: rebuild the extension (npm run build).', res);
        }
        return dashboardHtml(page.streamUrl, page.origin, body, res, nonce);
    }
    return messageHtml(page.title, page.detail, res);
}
