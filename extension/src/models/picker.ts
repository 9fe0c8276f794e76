// "Deepdive: Choose Code Model…": the quick pick's items from `deepdive/models/list`, the params of
// `deepdive/models/setDefault` each item carries, and what to say (and set) after a choice.
// No `vscode` import: unit-tested directly (tests/extension/unit/models.test.ts).
import type { ModelInfo, ModelList, ModelSetDefaultParams, ModelSpeed } from '../protocol';

export const CHOOSE_MODEL_COMMAND = 'deepdive.chooseCodeModel';
export const BACKEND_KEY = 'codegen.backend';

export interface ModelPickItem {
    label: string;
    description?: string;
    detail?: string;
    /** A separator line of the quick pick (QuickPickItemKind.Separator), not a choice. */
    separator?: boolean;
    /** What `deepdive/models/setDefault` gets when this item is chosen; absent on separators. */
    choice?: ModelSetDefaultParams;
}

/** Sizes as the CLI prints them: decimal units, one decimal. */
export function fmtSize(bytes: number | null | undefined): string {
    if (bytes === null || bytes === undefined) {
        return 'size unknown';
    }
    for (const [unit, scale] of [['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) {
        if (bytes >= scale) {
            return `${(bytes / scale).toFixed(1)} ${unit}`;
        }
    }
    return `${bytes} B`;
}

/** The speed `deepdive model bench` measured on this machine, or that it was not measured. */
export function fmtSpeed(speed: ModelSpeed | null | undefined): string {
    if (!speed) {
        return 'speed not measured (deepdive model bench)';
    }
    const where = speed.threads ? ` (${speed.threads} thread${speed.threads === 1 ? '' : 's'})` : '';
    return `${speed.ttftS.toFixed(2)} s to first token · ${Math.round(speed.tokensPerS)} tokens/s${where}`;
}

function shorten(path: string, home: string): string {
    return home && home !== '/' && (path === home || path.startsWith(home + '/')) ? '~' + path.slice(home.length) : path;
}

function where(m: ModelInfo, home: string): string {
    return m.kind === 'ollama' ? `${m.endpoint ?? ''} (${m.model ?? ''})` : shorten(m.path ?? '', home);
}

function choiceOf(m: ModelInfo): ModelSetDefaultParams {
    if (m.registered) {
        return { name: m.name };
    }
    return m.kind === 'ollama' ? { name: m.name, endpoint: m.endpoint, model: m.model } : { name: m.name, path: m.path };
}

function modelItem(m: ModelInfo, home: string): ModelPickItem {
    const icon = m.problem ? '$(warning) ' : m.isDefault ? '$(check) ' : '';
    return {
        label: icon + m.name,
        description: [m.kind, fmtSize(m.sizeBytes), fmtSpeed(m.speed)].join(' · '),
        detail: m.problem ?? [m.title, where(m, home)].filter((p) => p).join(' — '),
        choice: choiceOf(m),
    };
}

/** The builtin generator first, then the registered models, then the ones found and not added. */
export function pickItems(list: ModelList, home: string): ModelPickItem[] {
    const none = !list.default;
    const items: ModelPickItem[] = [{
        label: (none ? '$(check) ' : '') + 'Builtin generator',
        description: 'offline, no model',
        detail: list.models.length
            ? 'Templates for the model families it knows; a model answers more requests.'
            : 'No code model yet: `deepdive model pull qwen2.5-coder-0.5b` (491 MB) or `deepdive model add PATH` '
                + 'in a terminal.',
        choice: { name: null },
    }];
    const registered = list.models.filter((m) => m.registered);
    const found = list.models.filter((m) => !m.registered);
    items.push(...registered.map((m) => modelItem(m, home)));
    if (found.length) {
        items.push({ label: 'Found on this machine, not added yet', separator: true });
        items.push(...found.map((m) => modelItem(m, home)));
    }
    return items;
}

export interface AfterChoice {
    /** The `deepdive.codegen.backend` setting names a backend of its own: set it to `auto` so the choice counts. */
    setBackendToAuto: boolean;
    message: string;
}

/** What to tell the user once `setDefault` answered with ``list``, given the backend setting before. */
export function afterChoice(list: ModelList, backendSetting: string): AfterChoice {
    const chosen = list.models.find((m) => m.registered && m.name === list.default);
    const what = chosen
        ? `${chosen.name} (${chosen.kind}, ${fmtSize(chosen.sizeBytes)}; `
            + (chosen.speed ? `${fmtSpeed(chosen.speed)} on this machine)` : `${fmtSpeed(null)})`)
        : 'the builtin generator (no model)';
    const setBackendToAuto = backendSetting !== 'auto';
    const switched = setBackendToAuto ? ` (deepdive.codegen.backend was "${backendSetting}": now "auto")` : '';
    return { setBackendToAuto, message: `Deepdive: code generation now uses ${what}${switched}.` };
}

/** What `WorkspaceConfiguration.inspect` says about a setting (the parts used here). */
export interface Inspected {
    key: string;
    globalValue?: unknown;
    workspaceValue?: unknown;
    workspaceFolderValue?: unknown;
}

/** Where the backend setting is set, from `WorkspaceConfiguration.inspect`: change it there. */
export function settingScope(inspected: Inspected | undefined): 'global' | 'workspace' | 'workspaceFolder' {
    if (inspected?.workspaceFolderValue !== undefined) {
        return 'workspaceFolder';
    }
    return inspected?.workspaceValue !== undefined ? 'workspace' : 'global';
}
