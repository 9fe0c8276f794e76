/// <reference lib="dom" />
// The page's line back to the editor, when it runs in a VS Code webview (acquireVsCodeApi exists there and
// nowhere else: the browser page gets null). Two messages go out: `ready` once the page started, `open` for
// a file:line link; one comes in: `reveal` (scroll to a section: `diagnose`, `serve`), handled by dashboard.ts.

interface VsCodeApi {
    postMessage(message: unknown): void;
}

declare const acquireVsCodeApi: (() => VsCodeApi) | undefined;

/** The webview's API (acquired once: VS Code allows one call per page), or null in a browser. */
export const host: VsCodeApi | null = typeof acquireVsCodeApi === 'function' ? acquireVsCodeApi() : null;

/** Asks the editor to open `file` at the 1-based `line` (it opens only files of the workspace). */
export function openInEditor(file: string, line: number): void {
    host?.postMessage({ type: 'open', file, line });
}
