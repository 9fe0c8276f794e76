// The read-only `deepdive-proposal:` documents that show a proposed program in place, and the diff
// editor that compares one with the document it is proposed for. Nothing here writes a file.
import * as path from 'path';
import { Disposable, EventEmitter, TabInputText, TabInputTextDiff, TextDocumentContentProvider, Uri, ViewColumn, window, workspace } from 'vscode';
import { executeCommand } from '../common/vscodeapi';

export const PROPOSAL_SCHEME = 'deepdive-proposal';

/** How long a caller waits for an open proposal document to show the final text. */
const SETTLE_MS = 3000;

/** A proposal's URI: its own folder per generation, the file's name (so the language and the tab title fit). */
export function proposalUri(id: number, fileName: string): Uri {
    return Uri.from({ scheme: PROPOSAL_SCHEME, path: `/${id}/${fileName}` });
}

export class ProposalDocuments implements TextDocumentContentProvider, Disposable {
    private readonly texts = new Map<string, string>();
    private readonly emitter = new EventEmitter<Uri>();
    readonly onDidChange = this.emitter.event;

    register(): Disposable {
        return workspace.registerTextDocumentContentProvider(PROPOSAL_SCHEME, this);
    }

    provideTextDocumentContent(uri: Uri): string {
        return this.texts.get(uri.toString()) ?? 'This proposal was accepted or rejected: generate again for a new one.\n';
    }

    /** Sets the proposal's text; an open editor showing it redraws. */
    set(uri: Uri, text: string): void {
        if (this.texts.get(uri.toString()) === text) {
            return;
        }
        this.texts.set(uri.toString(), text);
        this.emitter.fire(uri);
    }

    delete(uri: Uri): void {
        this.texts.delete(uri.toString());
    }

    /** Resolves once an open document of `uri` reads `text` (at once when none is open; at most SETTLE_MS). */
    settled(uri: Uri, text: string): Promise<void> {
        const key = uri.toString();
        const doc = workspace.textDocuments.find((d) => d.uri.toString() === key);
        if (!doc || doc.getText() === text) {
            return Promise.resolve();
        }
        return new Promise((resolve) => {
            const done = () => {
                clearTimeout(timer);
                sub.dispose();
                resolve();
            };
            const timer = setTimeout(done, SETTLE_MS);
            const sub = workspace.onDidChangeTextDocument((e) => {
                if (e.document === doc && doc.getText() === text) {
                    done();
                }
            });
        });
    }

    dispose(): void {
        this.emitter.dispose();
        this.texts.clear();
    }
}

/**
 * Shows a proposal: as a diff against `original` (inline or side by side, as the user's diff
 * editor is set), or alone when there is nothing to compare with (a new file).
 */
export async function showProposal(proposal: Uri, original: Uri | undefined): Promise<void> {
    const name = path.posix.basename(proposal.path);
    if (original) {
        await executeCommand('vscode.diff', original, proposal, `${name} ↔ Deepdive proposal`, { preview: false, viewColumn: ViewColumn.Active });
    } else {
        await window.showTextDocument(await workspace.openTextDocument(proposal), { preview: false });
    }
}

/** Closes every tab that shows the proposal (diff or alone); a closed tab never saves anything. */
export async function closeProposal(proposal: Uri): Promise<void> {
    const key = proposal.toString();
    const tabs = window.tabGroups.all
        .flatMap((g) => g.tabs)
        .filter((t) => (t.input instanceof TabInputTextDiff && t.input.modified.toString() === key) || (t.input instanceof TabInputText && t.input.uri.toString() === key));
    if (tabs.length > 0) {
        await window.tabGroups.close(tabs, true);
    }
}
