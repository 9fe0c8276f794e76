import { describe, expect, it } from 'vitest';
import {
    afterChoice, fmtSize, fmtSpeed, pickItems, settingScope, type ModelPickItem,
} from '../../../extension/src/models/picker';
import type { ModelInfo, ModelList } from '../../../extension/src/protocol';

const HOME = '/home/me';
const gguf: ModelInfo = {
    name: 'qwen2.5-coder-0.5b', kind: 'gguf', registered: true, isDefault: true,
    title: 'Qwen2.5 Coder 0.5B Instruct AWQ · qwen2 · Q4_K_M', sizeBytes: 491_400_064,
    path: '/home/me/.cache/deepdive/models/Qwen--Qwen2.5-Coder-0.5B-Instruct-GGUF/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf',
    speed: { ttftS: 0.35, tokensPerS: 46.2, tokens: 64, device: 'cpu', measuredAt: 1.7e9, threads: 2 },
};
const folder: ModelInfo = {
    name: 'tiny', kind: 'hf-folder', registered: true, isDefault: false, title: 'GPT2LMHeadModel · float32',
    sizeBytes: 2_048, path: '/data/tiny', problem: 'folder missing: /data/tiny (add it again, or remove it)',
};
const ollama: ModelInfo = {
    name: 'ollama:qwen2.5-coder:7b', kind: 'ollama', registered: false, title: 'qwen2 · 7.6B · Q4_K_M',
    sizeBytes: 4_683_087_332, endpoint: 'http://127.0.0.1:11434', model: 'qwen2.5-coder:7b',
};
const found: ModelInfo = {
    name: 'coder-q4', kind: 'gguf', registered: false, title: 'Coder', sizeBytes: 398_000_000,
    path: '/home/me/.lmstudio/models/q/coder-q4.gguf',
};
const LIST: ModelList = {
    models: [gguf, folder, ollama, found], registry: '/home/me/.config/deepdive/models.json',
    default: 'qwen2.5-coder-0.5b', ollama: 'Ollama at http://127.0.0.1:11434: 1 model(s)',
};

const labels = (items: ModelPickItem[]) => items.map((i) => i.label);

describe('fmtSize and fmtSpeed', () => {
    it('says sizes the way the CLI does', () => {
        expect([fmtSize(491_400_064), fmtSize(4_683_087_332), fmtSize(2_048), fmtSize(12), fmtSize(null)])
            .toEqual(['491.4 MB', '4.7 GB', '2.0 kB', '12 B', 'size unknown']);
    });
    it('shows the speed measured here, or that it was not', () => {
        expect(fmtSpeed(gguf.speed)).toBe('0.35 s to first token · 46 tokens/s (2 threads)');
        expect(fmtSpeed({ ...gguf.speed!, threads: 1, ttftS: 1.234, tokensPerS: 15.5 })).toBe('1.23 s to first token · 16 tokens/s (1 thread)');
        expect(fmtSpeed({ ...gguf.speed!, threads: null })).toBe('0.35 s to first token · 46 tokens/s');
        expect(fmtSpeed(null)).toBe('speed not measured (deepdive model bench)');
    });
});

describe('pickItems', () => {
    const items = pickItems(LIST, HOME);

    it('lists the builtin generator, the registered models, then what was found', () => {
        expect(labels(items)).toEqual([
            'Builtin generator', '$(check) qwen2.5-coder-0.5b', '$(warning) tiny', 'Found on this machine, not added yet',
            'ollama:qwen2.5-coder:7b', 'coder-q4',
        ]);
        expect(items[3].separator).toBe(true);
    });

    it('describes each model: kind, size, speed, what it is and where it lives', () => {
        const row = items[1];
        expect(row.description).toBe('gguf · 491.4 MB · 0.35 s to first token · 46 tokens/s (2 threads)');
        expect(row.detail).toBe('Qwen2.5 Coder 0.5B Instruct AWQ · qwen2 · Q4_K_M — '
            + '~/.cache/deepdive/models/Qwen--Qwen2.5-Coder-0.5B-Instruct-GGUF/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf');
        expect(items[2].detail).toBe('folder missing: /data/tiny (add it again, or remove it)');
        expect(items[4].description).toBe('ollama · 4.7 GB · speed not measured (deepdive model bench)');
        expect(items[4].detail).toBe('qwen2 · 7.6B · Q4_K_M — http://127.0.0.1:11434 (qwen2.5-coder:7b)');
    });

    it('carries the setDefault params: a name, plus where a found model is so the daemon adds it', () => {
        expect(items[0].choice).toEqual({ name: null });
        expect(items[1].choice).toEqual({ name: 'qwen2.5-coder-0.5b' });
        expect(items[4].choice).toEqual({ name: 'ollama:qwen2.5-coder:7b', endpoint: 'http://127.0.0.1:11434', model: 'qwen2.5-coder:7b' });
        expect(items[5].choice).toEqual({ name: 'coder-q4', path: '/home/me/.lmstudio/models/q/coder-q4.gguf' });
    });

    it('marks the builtin generator when there is no default, and offers a way to get a model', () => {
        const none = pickItems({ models: [], registry: '/r', default: null, ollama: null }, HOME);
        expect(labels(none)).toEqual(['$(check) Builtin generator']);
        expect(none[0].detail).toContain('deepdive model pull qwen2.5-coder-0.5b');
    });
});

describe('afterChoice', () => {
    const chosen = { ...LIST, default: 'qwen2.5-coder-0.5b' };

    it('names the model and its speed; switches an explicit backend setting to auto', () => {
        expect(afterChoice(chosen, 'auto')).toEqual({
            setBackendToAuto: false,
            message: 'Deepdive: code generation now uses qwen2.5-coder-0.5b (gguf, 491.4 MB; 0.35 s to first token · 46 tokens/s (2 threads) on this machine).',
        });
        const fromBuiltin = afterChoice(chosen, 'builtin');
        expect(fromBuiltin.setBackendToAuto).toBe(true);
        expect(fromBuiltin.message).toContain('deepdive.codegen.backend was "builtin": now "auto"');
    });

    it('says when the builtin generator answers from now on', () => {
        expect(afterChoice({ ...LIST, default: null }, 'llamacpp')).toEqual({
            setBackendToAuto: true,
            message: 'Deepdive: code generation now uses the builtin generator (no model) '
                + '(deepdive.codegen.backend was "llamacpp": now "auto").',
        });
    });
});

describe('settingScope', () => {
    it('changes the setting where it is set: folder, workspace, else user', () => {
        expect(settingScope({ key: 'k', workspaceFolderValue: 'builtin' })).toBe('workspaceFolder');
        expect(settingScope({ key: 'k', workspaceValue: 'llamacpp', globalValue: 'builtin' })).toBe('workspace');
        expect(settingScope({ key: 'k', globalValue: 'builtin' })).toBe('global');
        expect(settingScope(undefined)).toBe('global');
    });
});
