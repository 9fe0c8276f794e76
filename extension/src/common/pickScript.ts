// Which script a command (Tune, Train) runs: the one its arguments name, else the active Python file,
// else one the user picks.
import * as path from 'path';
import { TextDocument, Uri, window, workspace } from 'vscode';
import type { ScriptRef } from './scriptArgs';
import { getWorkspaceFolders, isTrusted } from './vscodeapi';

export async function pickScript(ref: ScriptRef, title: string, openLabel: string): Promise<Uri | undefined> {
    if (ref.uri) {
        return Uri.parse(ref.uri);
    }
    if (ref.path) {
        const root = getWorkspaceFolders()[0]?.uri.fsPath;
        return Uri.file(path.isAbsolute(ref.path) || !root ? path.resolve(ref.path) : path.join(root, ref.path));
    }
    const active = window.activeTextEditor?.document;
    if (active && active.languageId === 'python' && active.uri.scheme === 'file') {
        return active.uri;
    }
    const picked = await window.showOpenDialog({
        title, canSelectMany: false, openLabel, filters: { Python: ['py'] }, defaultUri: getWorkspaceFolders()[0]?.uri,
    });
    return picked?.[0];
}

/** What a script command gets before it starts its job: the saved script, or why it stops. */
export type ScriptToRun = { uri: Uri; doc: TextDocument } | { state: 'refused'; error: string } | { state: 'dismissed' };

/**
 * The script a job of `kind` ("tune", "train") will run from disk: refused in an untrusted workspace
 * (the job runs the script), dismissed when no script is picked, saved first when it has unsaved edits.
 * Throws for a script that is not a file.
 */
export async function scriptToRun(ref: ScriptRef, kind: string, doing: string): Promise<ScriptToRun> {
    if (!isTrusted()) {
        const error = `Deepdive: ${doing} runs the script, and this workspace is not trusted (Manage Workspace Trust to allow it).`;
        if (!ref.quiet) {
            void window.showWarningMessage(error);
        }
        return { state: 'refused', error };
    }
    const title = kind.charAt(0).toUpperCase() + kind.slice(1);
    const uri = await pickScript(ref, `Deepdive: ${title} — the training script`, title);
    if (!uri) {
        return { state: 'dismissed' };
    }
    if (uri.scheme !== 'file') {
        throw new Error(`save the script to a file first: the ${kind} job runs it from disk`);
    }
    const doc = await workspace.openTextDocument(uri);
    if (doc.isDirty) {
        await doc.save();
    }
    return { uri, doc };
}
