import * as os from 'os';
import { ConfigurationChangeEvent } from 'vscode';
import { Vocabularies } from '../protocol';
import { CONFIG_SECTION, RESTART_KEYS } from './constants';
import { resolveVariables } from './variables';
import { getConfiguration, getWorkspaceFolders } from './vscodeapi';

/** Every Deepdive setting, resolved. Built fresh on each call: there is no module-level copy. */
export interface ISettings {
    /** Interpreter for the daemon; '' means "discover one" (see python.ts). */
    pythonPath: string;
    /** `deepdive.codegen.*`: how programs are generated and whether they are verified. */
    codegen: CodegenSettings;
}

/** `auto`: the default model of the registry (Deepdive: Choose Code Model…, `deepdive model default`), else builtin. */
export const CODEGEN_BACKENDS = Vocabularies.codegenBackends;
export const CODEGEN_FRAMEWORKS = ['auto', ...Vocabularies.frameworks] as const;

export interface CodegenSettings {
    backend: (typeof CODEGEN_BACKENDS)[number];
    /** `transformers`: a model directory; `llamacpp`: a GGUF file. '' when unset. */
    modelPath: string;
    /** `openai-compatible`: the server's base URL. */
    endpoint: string;
    /** `openai-compatible`: the model name. '' when unset. */
    model: string;
    allowRemoteEndpoint: boolean;
    framework: (typeof CODEGEN_FRAMEWORKS)[number];
    /** Run the generated program's checks (never in an untrusted workspace). */
    verify: boolean;
}

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:11434';

function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
    return allowed.includes(value as T) ? (value as T) : fallback;
}

export function getSettings(): ISettings {
    const config = getConfiguration(CONFIG_SECTION);
    const folder = getWorkspaceFolders()[0]?.uri.fsPath;
    const vars = { workspaceFolder: folder, userHome: os.homedir() };
    const raw = config.get<string>('pythonPath', '').trim();
    return {
        pythonPath: resolveVariables(raw, vars),
        codegen: {
            backend: oneOf(config.get('codegen.backend'), CODEGEN_BACKENDS, 'auto'),
            modelPath: resolveVariables(config.get<string>('codegen.modelPath', '').trim(), vars),
            endpoint: config.get<string>('codegen.endpoint', DEFAULT_ENDPOINT).trim() || DEFAULT_ENDPOINT,
            model: config.get<string>('codegen.model', '').trim(),
            allowRemoteEndpoint: config.get<boolean>('codegen.allowRemoteEndpoint', false) === true,
            framework: oneOf(config.get('codegen.framework'), CODEGEN_FRAMEWORKS, 'auto'),
            verify: config.get<boolean>('codegen.verify', true) !== false,
        },
    };
}

/** True when the change touches one of the keys that require a daemon restart. */
export function checkIfConfigurationChanged(e: ConfigurationChangeEvent): boolean {
    return RESTART_KEYS.some((key) => e.affectsConfiguration(key));
}
