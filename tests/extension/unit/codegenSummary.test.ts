import { describe, expect, it } from 'vitest';
import { buildGenerateParams } from '../../../extension/src/codegen/params';
import { formatSummary, renderChecks, summaryIsWarning, UNTRUSTED_SKIP, VERIFY_OFF } from '../../../extension/src/codegen/summary';
import type { CodegenSettings } from '../../../extension/src/common/settings';
import { GenerateResult } from '../../../extension/src/protocol';

const ok = (name: string, seconds = 0.5) => ({ name, ok: true, detail: '', seconds });

function result(over: Partial<GenerateResult> = {}): GenerateResult {
    return {
        code: 'def build_model(): ...\n',
        backend: 'builtin',
        framework: 'torch',
        intent: { task: 'classification', architecture: 'resnet18' },
        verified: true,
        checks: [ok('parse'), ok('imports'), ok('contract'), ok('smoke'), ok('shapes')],
        rounds: 0,
        seconds: 3.21,
        filename: 'resnet18_cifar10.py',
        message: null,
        ...over,
    };
}

const trusted = { verifyRequested: true, trusted: true };

describe('formatSummary', () => {
    it('all checks passed', () => {
        expect(formatSummary(result(), trusted)).toBe('verified: 5/5 checks passed in 3.2 s');
        expect(summaryIsWarning(result(), trusted)).toBe(false);
    });

    it('names the first failing check and its first detail line', () => {
        const r = result({
            verified: false,
            checks: [ok('parse'), { name: 'smoke', ok: false, detail: '\nRuntimeError: mat1 and mat2 shapes cannot be multiplied\nTraceback…' }, { name: 'shapes', ok: false }],
        });
        expect(formatSummary(r, trusted)).toBe('verification failed: smoke — RuntimeError: mat1 and mat2 shapes cannot be multiplied');
        expect(summaryIsWarning(r, trusted)).toBe(true);
    });

    it('mentions repair rounds', () => {
        expect(formatSummary(result({ rounds: 2 }), trusted)).toBe('verified: 5/5 checks passed in 3.2 s after 2 repair rounds');
        expect(formatSummary(result({ rounds: 1, verified: false, checks: [{ name: 'smoke', ok: false }] }), trusted)).toBe(
            'verification failed: smoke after 1 repair round',
        );
    });

    it('says verification was skipped in an untrusted workspace', () => {
        const r = result({ verified: false, checks: [] });
        expect(formatSummary(r, { verifyRequested: true, trusted: false })).toBe(UNTRUSTED_SKIP);
        expect(UNTRUSTED_SKIP).toMatch(/untrusted/);
        expect(summaryIsWarning(r, { verifyRequested: true, trusted: false })).toBe(false);
    });

    it('says when verification is off', () => {
        expect(formatSummary(result({ verified: false, checks: [] }), { verifyRequested: false, trusted: true })).toBe(VERIFY_OFF);
    });

    it('falls back to the daemon message', () => {
        expect(formatSummary(result({ verified: false, checks: [], message: 'the sandbox is unavailable' }), trusted)).toBe(
            'not verified: the sandbox is unavailable',
        );
        expect(formatSummary(result({ verified: false, checks: [], message: 'verification skipped: no torch' }), trusted)).toBe(
            'verification skipped: no torch',
        );
    });

    it('adds up check times when the result has no total', () => {
        expect(formatSummary(result({ seconds: undefined, checks: [ok('a', 1), ok('b', 2)] }), trusted)).toBe('verified: 2/2 checks passed in 3.0 s');
    });
});

describe('renderChecks', () => {
    it('lists every check, the failing details and the intent', () => {
        const md = renderChecks(
            'a resnet18 | for cifar',
            result({ verified: false, checks: [ok('parse', 0.01), { name: 'smoke', ok: false, detail: 'line 1\nline 2', seconds: 2 }] }),
            trusted,
        );
        expect(md).toContain('**Prompt:** a resnet18 \\| for cifar');
        expect(md).toContain('**Result:** verification failed: smoke — line 1');
        expect(md).toContain('| ✅ | parse | 0.0 s |  |');
        expect(md).toContain('| ❌ | smoke | 2.0 s | line 1 |');
        expect(md).toContain('### smoke\n\n```text\nline 1\nline 2\n```');
        expect(md).toContain('"architecture": "resnet18"');
        expect(md).toContain('suggested file `resnet18_cifar10.py`');
    });

    it('says when no checks ran', () => {
        expect(renderChecks('x', result({ checks: [], verified: false }), { verifyRequested: false, trusted: true })).toContain('No checks ran.');
    });
});

describe('buildGenerateParams', () => {
    const base: CodegenSettings = {
        backend: 'builtin',
        modelPath: '/models/m',
        endpoint: 'http://127.0.0.1:11434',
        model: 'qwen',
        allowRemoteEndpoint: false,
        framework: 'auto',
        verify: true,
    };

    it('builtin: only what applies', () => {
        expect(buildGenerateParams('  a CNN ', base, true)).toEqual({ prompt: 'a CNN', backend: 'builtin', framework: null, verify: true });
    });

    it('never verifies in an untrusted workspace or when verify is off', () => {
        expect(buildGenerateParams('x', base, false).verify).toBe(false);
        expect(buildGenerateParams('x', { ...base, verify: false }, true).verify).toBe(false);
    });

    it('framework override', () => {
        expect(buildGenerateParams('x', { ...base, framework: 'tensorflow' }, true).framework).toBe('tensorflow');
    });

    it('model backends get the model path', () => {
        expect(buildGenerateParams('x', { ...base, backend: 'llamacpp' }, true)).toMatchObject({ backend: 'llamacpp', modelPath: '/models/m' });
        expect(buildGenerateParams('x', { ...base, backend: 'transformers', modelPath: '' }, true)).not.toHaveProperty('modelPath');
    });

    it('openai-compatible gets endpoint, model and allowRemote', () => {
        const p = buildGenerateParams('x', { ...base, backend: 'openai-compatible', allowRemoteEndpoint: true }, true);
        expect(p).toMatchObject({ endpoint: 'http://127.0.0.1:11434', model: 'qwen', allowRemote: true });
        expect(p).not.toHaveProperty('modelPath');
    });
});
