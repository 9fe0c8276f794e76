// The `deepdive/generate` params from a prompt and the user's settings. No `vscode` import.
import type { CodegenSettings } from '../common/settings';
import { GenerateParams } from '../protocol';

/**
 * Generated code runs (verification) only when the user asked for it and the workspace is trusted.
 * Backend options that do not apply to the chosen backend are left out.
 */
export function buildGenerateParams(prompt: string, s: CodegenSettings, trusted: boolean): GenerateParams {
    const params: GenerateParams = {
        prompt: prompt.trim(),
        backend: s.backend,
        framework: s.framework === 'auto' ? null : s.framework,
        verify: s.verify && trusted,
    };
    if ((s.backend === 'transformers' || s.backend === 'llamacpp') && s.modelPath) {
        params.modelPath = s.modelPath;
    }
    if (s.backend === 'openai-compatible') {
        params.endpoint = s.endpoint;
        if (s.model) {
            params.model = s.model;
        }
        params.allowRemote = s.allowRemoteEndpoint;
    }
    return params;
}
