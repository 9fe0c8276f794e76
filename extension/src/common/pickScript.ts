// Which script a command (Tune, Train) runs: the one its arguments name, else the active Python file,
// else one the user picks.
import * as path from 'path';
import { Uri, window } from 'vscode';
import type { ScriptRef } from './scriptArgs';
import { getWorkspaceFolders } from './vscodeapi';

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
