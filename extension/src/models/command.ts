// "Deepdive: Choose Code Model…": the registry's models (and the ones found on this machine) in a quick
// pick; the choice becomes the default `auto` uses (`deepdive/models/setDefault`). The items and the
// messages come from ./picker (unit-tested); this file only talks to VS Code and the daemon.
import * as os from 'os';
import { ConfigurationTarget, Disposable, ProgressLocation, QuickPickItem, QuickPickItemKind, window } from 'vscode';
import { CONFIG_SECTION } from '../common/constants';
import { guardCommand } from '../common/guard';
import { DeepdiveServer } from '../common/server';
import { getConfiguration, registerCommand } from '../common/vscodeapi';
import { ModelList, Requests } from '../protocol';
import { afterChoice, BACKEND_KEY, CHOOSE_MODEL_COMMAND, ModelPickItem, pickItems, settingScope } from './picker';

/** What the command resolves to (the integration tests read it). */
export interface ChooseOutcome {
    state: 'chosen' | 'dismissed';
    default?: string | null;
    list?: ModelList;
}

const TARGETS = {
    global: ConfigurationTarget.Global,
    workspace: ConfigurationTarget.Workspace,
    workspaceFolder: ConfigurationTarget.WorkspaceFolder,
} as const;

async function choose(server: DeepdiveServer): Promise<ChooseOutcome> {
    const list = await window.withProgress(
        { location: ProgressLocation.Window, title: 'Deepdive: looking for code models' },
        () => server.request(Requests.modelsList, { discover: true }),
    );
    const items = pickItems(list, os.homedir()).map((item): QuickPickItem & { item: ModelPickItem } =>
        item.separator ? { label: item.label, kind: QuickPickItemKind.Separator, item }
            : { label: item.label, description: item.description, detail: item.detail, item });
    const picked = await window.showQuickPick(items, {
        title: 'Deepdive: Choose Code Model',
        placeHolder: `The model code generation uses (registry: ${list.registry})`,
        matchOnDescription: true,
        matchOnDetail: true,
        ignoreFocusOut: true,
    });
    if (!picked?.item.choice) {
        return { state: 'dismissed' };
    }
    const result = await server.request(Requests.modelsSetdefault, picked.item.choice);
    const config = getConfiguration(CONFIG_SECTION);
    const outcome = afterChoice(result, config.get<string>(BACKEND_KEY, 'auto'));
    if (outcome.setBackendToAuto) {
        await config.update(BACKEND_KEY, 'auto', TARGETS[settingScope(config.inspect(BACKEND_KEY))]);
    }
    void window.showInformationMessage(outcome.message);
    return { state: 'chosen', default: result.default, list: result };
}

export function registerModelCommands(server: DeepdiveServer): Disposable[] {
    return [registerCommand(CHOOSE_MODEL_COMMAND, () => guardCommand('Choose code model', () => choose(server)))];
}
