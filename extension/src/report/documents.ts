// Read-only virtual documents (the environment report, job logs), readable by tests and the DOM.
import { Disposable, EventEmitter, TextDocumentContentProvider, Uri, window, workspace } from 'vscode';

export class ReadOnlyDocuments implements TextDocumentContentProvider, Disposable {
    private readonly contents = new Map<string, string>();
    private readonly emitter = new EventEmitter<Uri>();
    readonly onDidChange = this.emitter.event;

    /** Serves `scheme:` URIs; returns the registration. */
    register(scheme: string): Disposable {
        return workspace.registerTextDocumentContentProvider(scheme, this);
    }

    provideTextDocumentContent(uri: Uri): string {
        return this.contents.get(uri.toString()) ?? `Nothing to show for ${uri.toString()}: run the command that produced it again.`;
    }

    /** Sets the text; an open editor showing `uri` updates. */
    set(uri: Uri, text: string): void {
        this.contents.set(uri.toString(), text);
        this.emitter.fire(uri);
    }

    async show(uri: Uri, text: string): Promise<void> {
        this.set(uri, text);
        const doc = await workspace.openTextDocument(uri);
        await window.showTextDocument(doc, { preview: false });
    }

    isOpen(uri: Uri): boolean {
        const key = uri.toString();
        return workspace.textDocuments.some((d) => d.uri.toString() === key);
    }

    dispose(): void {
        this.emitter.dispose();
    }
}
