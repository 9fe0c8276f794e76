import { readFileSync } from 'fs';
import { join } from 'path';
import { describe, expect, it } from 'vitest';
import {
    DashboardResources, externalStreamUrl, hubOrigin, messageHtml, pageBody, pageForHub, renderPage, scriptJson,
} from '../../../extension/src/views/dashboardHtml';

const RES: DashboardResources = {
    cspSource: 'https://file+.vscode-resource.vscode-cdn.net',
    scriptUri: 'https://file+.vscode-resource.vscode-cdn.net/ext/out/webview/dashboard.js',
    styleUri: 'https://file+.vscode-resource.vscode-cdn.net/ext/out/webview/dashboard.css',
};
const NONCE = '0123456789abcdef0123456789abcdef';
const STREAM = 'ws://127.0.0.1:40123/stream?token=abc</script><b>';
const BODY = pageBody(readFileSync(join(__dirname, '../../../extension/webview/index.html'), 'utf8'));

function cspOf(html: string): Map<string, string> {
    const m = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(html);
    expect(m, 'a CSP meta tag').not.toBeNull();
    const policy = m![1].replace(/&#39;/g, "'");
    return new Map(policy.split(';').map((d) => d.trim()).filter(Boolean).map((d) => {
        const [name, ...values] = d.split(/\s+/);
        return [name, values.join(' ')];
    }));
}

function livePage(streamUrl = STREAM): string {
    const page = pageForHub({ running: true, url: 'ws://127.0.0.1:40123', streamUrl, token: 'abc' });
    expect(page.kind).toBe('live');
    return renderPage(page, BODY, RES, NONCE);
}

describe('hubOrigin', () => {
    it('is the websocket origin and port of a loopback stream URL', () => {
        expect(hubOrigin('ws://127.0.0.1:40123/stream?token=x')).toEqual({ origin: 'ws://127.0.0.1:40123', port: 40123 });
    });
    it.each([undefined, null, '', 'not a url', 'http://127.0.0.1:1/stream', 'ws://10.0.0.2:4000/stream', 'ws://127.0.0.1/stream'])(
        'refuses %s', (u) => expect(hubOrigin(u)).toBeUndefined());
});

describe('the live dashboard page', () => {
    it('puts the nonce on every script, and has no other script', () => {
        const html = livePage();
        const scripts = html.match(/<script\b[^>]*>/g) ?? [];
        expect(scripts).toHaveLength(2);
        for (const s of scripts) {
            expect(s).toContain(`nonce="${NONCE}"`);
        }
        expect(html).not.toMatch(/\son[a-z]+=/i); // no inline event handlers
    });

    it('has a strict CSP whose connect-src is exactly the hub origin', () => {
        const csp = cspOf(livePage());
        expect(csp.get('default-src')).toBe("'none'");
        expect(csp.get('script-src')).toBe(`'nonce-${NONCE}'`);
        expect(csp.get('style-src')).toBe(RES.cspSource);
        expect(csp.get('img-src')).toBe(`${RES.cspSource} data:`);
        expect(csp.get('connect-src')).toBe('ws://127.0.0.1:40123');
        expect([...csp.values()].join(' ')).not.toContain('unsafe');
    });

    it('sets DEEPDIVE_CONFIG before loading the bundle, JSON-escaped', () => {
        const html = livePage();
        const config = html.indexOf('window.DEEPDIVE_CONFIG = ');
        const bundle = html.indexOf(`src="${RES.scriptUri}"`);
        expect(config).toBeGreaterThan(0);
        expect(bundle).toBeGreaterThan(config);
        expect(html).not.toContain('</script><b>');
        const json = /window\.DEEPDIVE_CONFIG = (.*);<\/script>/.exec(html)![1];
        expect(JSON.parse(json)).toEqual({ streamUrl: STREAM });
        expect(html).toContain(`href="${RES.styleUri}"`);
    });

    it('carries the page body the bundle renders into', () => {
        expect(BODY).toBeDefined();
        const html = livePage();
        for (const id of ['conn', 'verdict-body', 'charts', 'devices-body', 'host-body', 'runs-body']) {
            expect(html).toContain(`id="${id}"`);
        }
    });

    it('says the page is missing instead of rendering an empty one', () => {
        const page = pageForHub({ running: true, streamUrl: 'ws://127.0.0.1:1/stream?token=t' });
        const html = renderPage(page, undefined, RES, NONCE);
        expect(html).toContain('missing');
        expect(html).not.toContain('<script');
    });
});

describe('when there is no hub', () => {
    it('renders the reason, with no script and no connect-src', () => {
        const page = pageForHub({ running: false, reason: 'port <busy> & refused' });
        expect(page.kind).toBe('message');
        const html = renderPage(page, BODY, RES, NONCE);
        expect(html).toContain('The Deepdive telemetry hub is not running.');
        expect(html).toContain('Reason: port &lt;busy&gt; &amp; refused');
        expect(html).not.toContain('<script');
        const csp = cspOf(html);
        expect(csp.get('default-src')).toBe("'none'");
        expect(csp.has('script-src')).toBe(false);
        expect(csp.has('connect-src')).toBe(false);
    });

    it('says so when the hub runs but its address is unusable', () => {
        const page = pageForHub({ running: true, streamUrl: 'ws://192.168.1.5:8000/stream?token=secret' });
        expect(page.kind).toBe('message');
        const html = renderPage(page, BODY, RES, NONCE);
        expect(html).toContain('no usable address');
        expect(html).not.toContain('secret');
    });

    it('a message page without detail has just the title', () => {
        const html = messageHtml('The Deepdive daemon is starting…', undefined, RES);
        expect(html).toContain('The Deepdive daemon is starting…');
        expect(html).not.toContain('<p');
    });
});

describe('scriptJson', () => {
    it('cannot close the script or open a comment', () => {
        const s = scriptJson({ a: '</script><!-- & \u2028' });
        expect(s).not.toMatch(/[<>&\u2028]/);
        expect(JSON.parse(s)).toEqual({ a: '</script><!-- & \u2028' });
    });
});

describe('remote workspaces: the stream URL through the editor\'s port forwarding', () => {
    const streamUrl = 'ws://127.0.0.1:40123/stream?token=abc';

    it('keeps the loopback URL when asExternalUri gave nothing else', () => {
        expect(externalStreamUrl(streamUrl, undefined)).toBe(streamUrl);
        const page = pageForHub({ running: true, streamUrl });
        expect(page).toMatchObject({ kind: 'live', streamUrl, hubPort: 40123, origin: { origin: 'ws://127.0.0.1:40123' } });
    });

    it('uses a forwarded port (Remote-SSH) and a proxy URL with a path prefix (code-server, Codespaces)', () => {
        expect(externalStreamUrl(streamUrl, 'http://localhost:51234/')).toBe('ws://localhost:51234/stream?token=abc');
        expect(externalStreamUrl(streamUrl, 'https://ide.example.com/proxy/40123/')).toBe('wss://ide.example.com/proxy/40123/stream?token=abc');
        const page = pageForHub({ running: true, streamUrl }, 'https://ide.example.com/proxy/40123/');
        expect(page).toMatchObject({ kind: 'live', hubPort: 40123, origin: { origin: 'wss://ide.example.com', port: 443 } });
        const html = renderPage(page, BODY, RES, NONCE);
        expect(html).toContain('connect-src wss://ide.example.com');
        expect(html).toContain('wss://ide.example.com/proxy/40123/stream?token=abc');
    });

    it('ignores an external URI it cannot use', () => {
        expect(externalStreamUrl(streamUrl, 'not a url')).toBe(streamUrl);
        expect(externalStreamUrl(streamUrl, 'file:///x')).toBe(streamUrl);
    });
});
