import * as os from 'os';
import { ConfigurationChangeEvent } from 'vscode';
import { CONFIG_SECTION, RESTART_KEYS } from './constants';
import { resolveVariables } from './variables';
import { getConfiguration, getWorkspaceFolders } from './vscodeapi';

/** Every Deepdive setting, resolved. Built fresh on each call: there is no module-level copy. */
export interface ISettings {
    /** Interpreter for the daemon; '' means "discover one" (see python.ts). */
    pythonPath: string;
}

export function getSettings(): ISettings {
    const config = getConfiguration(CONFIG_SECTION);
    const folder = getWorkspaceFolders()[0]?.uri.fsPath;
    const raw = config.get<string>('pythonPath', '').trim();
    return {
        pythonPath: resolveVariables(raw, { workspaceFolder: folder, userHome: os.homedir() }),
    };
}

/** True when the change touches one of the keys that require a daemon restart. */
export function checkIfConfigurationChanged(e: ConfigurationChangeEvent): boolean {
    return RESTART_KEYS.some((key) => e.affectsConfiguration(key));
}
