// Bundles the extension (and vscode-languageclient) into out/extension.js, and the dashboard page
// (extension/webview: TypeScript + uPlot, CSS, index.html) into out/webview/.
// usage: node extension/esbuild.mjs [--watch] [--minify]
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const watch = process.argv.includes('--watch');

const options = {
    absWorkingDir: root,
    entryPoints: ['extension/src/extension.ts'],
    outfile: 'out/extension.js',
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    external: ['vscode'],
    sourcemap: true,
    minify: process.argv.includes('--minify'),
    logLevel: 'info',
};

// the dashboard: one script and one stylesheet (uPlot's CSS inlined), no inline script, no network
const webview = {
    absWorkingDir: root,
    entryPoints: ['extension/webview/dashboard.ts', 'extension/webview/dashboard.css'],
    outdir: 'out/webview',
    entryNames: '[name]',
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['chrome114', 'firefox115', 'safari16'],
    sourcemap: true,
    minify: process.argv.includes('--minify'),
    logLevel: 'info',
    plugins: [{
        name: 'copy-index-html',
        setup(build) {
            build.onEnd(() => {
                mkdirSync(`${root}/out/webview`, { recursive: true });
                copyFileSync(`${root}/extension/webview/index.html`, `${root}/out/webview/index.html`);
            });
        },
    }],
};

if (watch) {
    const ctxs = await Promise.all([esbuild.context(options), esbuild.context(webview)]);
    await Promise.all(ctxs.map(c => c.watch()));
} else {
    await Promise.all([esbuild.build(options), esbuild.build(webview)]);
}
