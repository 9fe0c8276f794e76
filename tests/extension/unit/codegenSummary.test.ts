import { describe, expect, it } from 'vitest';
import { buildGenerateParams } from '../../../extension/src/codegen/params';
import { formatSummary, isVerified, renderChecks, summaryIsWarning, UNTRUSTED_SKIP, VERIFY_OFF } from '../../../extension/src/codegen/summary';
import type { CodegenSettings } from '../../../extension/src/common/settings';
import { GenerateResult, PropertyCheck } from '../../../extension/src/protocol';

const ok = (name: string, seconds = 0.5) => ({ name, ok: true, detail: '', seconds });
const met = (label: string, detail = ''): PropertyCheck => {
    const [name, ...value] = label.split(' ');
    return { name, expected: value.join(' '), status: 'met', detail, text: '', label };
};

function result(over: Partial<GenerateResult> = {}): GenerateResult {
    return {
        code: 'def build_model(): ...\n',
        backend: 'builtin',
        framework: 'torch',
        intent: { task: 'classification', architecture: 'resnet18' },
        verified: true,
        checks: [ok('parse'), ok('imports'), ok('contract'), ok('smoke'), ok('properties')],
        rounds: 0,
        seconds: 3.21,
        filename: 'resnet18_cifar10.py',
        message: null,
        properties: [met('outputs 10', 'output (8, 10): 10 units per example'), met('family resnet')],
        understoodAs: { prompt: 'a resnet18 for cifar', stated: [{ name: 'outputs', value: 10 }, { name: 'family', value: 'resnet' }] },
        notUnderstood: [],
        gaps: [],
        ...over,
    };
}

const trusted = { verifyRequested: true, trusted: true };
const dropoutFailed: PropertyCheck = {
    name: 'no_layer', expected: 'Dropout', status: 'failed', label: 'no_layer Dropout', text: 'without dropout',
    detail: 'model has 2 Dropout modules (features.3, head.1)',
};
const taskUnchecked: PropertyCheck = {
    name: 'task', expected: 'policy', status: 'not_checked', label: 'task policy', text: 'a policy network',
    detail: 'what makes a policy network cannot be told from its shapes',
};

describe('formatSummary', () => {
    it('all checks passed and every stated property met', () => {
        expect(formatSummary(result(), trusted)).toBe('verified: 5/5 checks passed, 2/2 stated properties met in 3.2 s');
        expect(summaryIsWarning(result(), trusted)).toBe(false);
        expect(isVerified(result())).toBe(true);
    });

    it('a failed stated property is never verified, whatever the daemon says', () => {
        const r = result({ properties: [met('outputs 10'), dropoutFailed] });
        expect(formatSummary(r, trusted)).toBe('verification failed: no_layer Dropout — model has 2 Dropout modules (features.3, head.1)');
        expect(formatSummary(r, trusted)).not.toMatch(/verified/);
        expect(isVerified(r)).toBe(false);
        expect(summaryIsWarning(r, trusted)).toBe(true);
        const two = result({ verified: false, properties: [dropoutFailed, { ...dropoutFailed, label: 'outputs 12', detail: 'output (8, 10)' }] });
        expect(formatSummary(two, trusted)).toBe('verification failed: no_layer Dropout — model has 2 Dropout modules (features.3, head.1) (and 1 more property)');
    });

    it('a property that was not checked keeps the word "verified" away', () => {
        const r = result({ verified: false, properties: [met('outputs 2'), taskUnchecked], message: 'checks incomplete: …' });
        expect(formatSummary(r, trusted)).toBe('checks incomplete: 1 of 2 stated properties not checked (task policy)');
        expect(formatSummary(r, trusted)).not.toMatch(/verified/);
        expect(summaryIsWarning(r, trusted)).toBe(true);
        expect(isVerified({ ...r, verified: true })).toBe(false);
    });

    it('words not understood keep the word "verified" away', () => {
        const r = result({ verified: false, notUnderstood: ['capsule routing'] });
        expect(formatSummary(r, trusted)).toBe('checks incomplete: not understood, so not checked: "capsule routing"');
        expect(isVerified({ ...r, verified: true })).toBe(false);
    });

    it('a request the builtin cannot build as asked: no program, what is missing', () => {
        const r = result({ code: '', verified: false, checks: [], properties: [{ ...taskUnchecked, detail: 'no program' }],
            gaps: ['no template for object detection'],
            message: 'the builtin generator cannot build this as asked: no template for object detection. No program: a local model would write it' });
        expect(formatSummary(r, trusted)).toBe('no program: the builtin generator cannot build this as asked: no template for object detection. No program: a local model would write it');
        expect(summaryIsWarning(r, trusted)).toBe(true);
        expect(summaryIsWarning(r, { verifyRequested: false, trusted: true })).toBe(true);
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
        expect(formatSummary(result({ rounds: 2 }), trusted)).toBe('verified: 5/5 checks passed, 2/2 stated properties met in 3.2 s after 2 repair rounds');
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
        expect(VERIFY_OFF).not.toMatch(/verified/);
    });

    it('falls back to the daemon message', () => {
        expect(formatSummary(result({ verified: false, checks: [], message: 'the sandbox is unavailable' }), trusted)).toBe(
            'the sandbox is unavailable',
        );
        expect(formatSummary(result({ verified: false, checks: [], message: 'verification skipped: no torch' }), trusted)).toBe(
            'verification skipped: no torch',
        );
    });

    it('adds up check times when the result has no total; a prompt that states nothing', () => {
        expect(formatSummary(result({ seconds: undefined, checks: [ok('a', 1), ok('b', 2)], properties: [] }), trusted)).toBe(
            'verified: 2/2 checks passed, no property stated in 3.0 s',
        );
    });
});

describe('renderChecks', () => {
    it('lists every stated property, every check, the failing details and the reading', () => {
        const md = renderChecks(
            'a resnet18 | for cifar',
            result({
                verified: false,
                checks: [ok('parse', 0.01), { name: 'smoke', ok: false, detail: 'line 1\nline 2', seconds: 2 }],
                properties: [met('outputs 10', 'output (8, 10)'), dropoutFailed, taskUnchecked],
                notUnderstood: ['48 past values'],
            }),
            trusted,
        );
        expect(md).toContain('**Prompt:** a resnet18 \\| for cifar');
        expect(md).toContain('**Result:** verification failed: smoke — line 1');
        expect(md).toContain('## Stated properties');
        expect(md).toContain('| ✅ met | outputs 10 |  | output (8, 10) |');
        expect(md).toContain('| ❌ failed | no_layer Dropout | "without dropout" | model has 2 Dropout modules (features.3, head.1) |');
        expect(md).toContain('| ➖ not checked | task policy | "a policy network" | what makes a policy network cannot be told from its shapes |');
        expect(md).toContain('| ✅ | parse | 0.0 s |  |');
        expect(md).toContain('| ❌ | smoke | 2.0 s | line 1 |');
        expect(md).toContain('### smoke\n\n```text\nline 1\nline 2\n```');
        expect(md).toContain('## Not understood\n\n- "48 past values"');
        expect(md).toContain('## What the prompt was understood as');
        expect(md).toContain('"prompt": "a resnet18 for cifar"');
        expect(md).toContain('"architecture": "resnet18"');
        expect(md).toContain('suggested file `resnet18_cifar10.py`');
    });

    it('shows what the builtin cannot build', () => {
        const md = renderChecks('x', result({ code: '', verified: false, checks: [], gaps: ['no template for object detection'] }), trusted);
        expect(md).toContain('## What the builtin generator cannot build as asked\n\n- no template for object detection');
        expect(md).toContain('**Result:** no program:');
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
