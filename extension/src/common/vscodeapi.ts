// Thin wrappers over the `vscode` API: one seam for the rest of the code (and for tests).
import {
    commands,
    ConfigurationScope,
    Disposable,
    extensions,
    StatusBarAlignment,
    StatusBarItem,
    window,
    workspace,
    WorkspaceConfiguration,
    WorkspaceFolder,
} from 'vscode';

export function getConfiguration(section: string, scope?: ConfigurationScope): WorkspaceConfiguration {
    return workspace.getConfiguration(section, scope);
}

export function getWorkspaceFolders(): readonly WorkspaceFolder[] {
    return workspace.workspaceFolders ?? [];
}

export function isTrusted(): boolean {
    return workspace.isTrusted;
}

export function registerCommand<A extends unknown[]>(command: string, callback: (...args: A) => unknown): Disposable {
    return commands.registerCommand(command, callback);
}

export function executeCommand<T = unknown>(command: string, ...rest: unknown[]): Thenable<T> {
    return commands.executeCommand<T>(command, ...rest);
}

export function createStatusBarItem(id: string, priority: number): StatusBarItem {
    return window.createStatusBarItem(id, StatusBarAlignment.Left, priority);
}

export function getExtension<T>(id: string) {
    return extensions.getExtension<T>(id);
}

export const onDidChangeConfiguration = workspace.onDidChangeConfiguration;
export const onDidGrantWorkspaceTrust = workspace.onDidGrantWorkspaceTrust;
