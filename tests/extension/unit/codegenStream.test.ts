import { describe, expect, it } from 'vitest';
import { cursorFraming, finalBody, indentLines } from '../../../extension/src/codegen/region';
import { GenerationStream } from '../../../extension/src/codegen/stream';

describe('GenerationStream', () => {
    it('appends text chunks', () => {
        const s = new GenerationStream();
        expect(s.apply({ kind: 'text', text: 'import torch\n' })).toBe('text');
        expect(s.apply({ kind: 'text', text: 'def build_model():' })).toBe('text');
        expect(s.apply({ kind: 'text', text: '' })).toBe('none');
        expect(s.text).toBe('import torch\ndef build_model():');
        expect(s.progressLabel()).toBe('generating, 2 lines');
    });

    it('a reset discards the text and the checks; a repairing phase counts a round', () => {
        const s = new GenerationStream();
        s.apply({ kind: 'text', text: 'bad program' });
        s.apply({ kind: 'check', check: { name: 'smoke', ok: false, detail: 'boom' } });
        expect(s.apply({ kind: 'reset' })).toBe('text');
        expect(s.text).toBe('');
        expect(s.checks).toEqual([]);
        expect(s.resets).toBe(1);
        s.apply({ kind: 'phase', text: 'repairing' });
        expect(s.progressLabel()).toBe('repairing, round 1');
        s.apply({ kind: 'text', text: 'good' });
        expect(s.text).toBe('good');
    });

    it('a reset before any text only changes the progress line', () => {
        const s = new GenerationStream();
        expect(s.apply({ kind: 'reset' })).toBe('progress');
    });

    it('phases and checks make the progress line', () => {
        const s = new GenerationStream();
        expect(s.apply({ kind: 'phase', text: 'verifying' })).toBe('progress');
        expect(s.apply({ kind: 'phase', text: 'verifying' })).toBe('none');
        s.apply({ kind: 'check', check: { name: 'parse', ok: true } });
        s.apply({ kind: 'check', check: { name: 'imports', ok: true } });
        s.apply({ kind: 'check', check: { name: 'smoke', ok: true } });
        expect(s.progressLabel()).toBe('verifying, 3 checks passed');
        s.apply({ kind: 'check', check: { name: 'shapes', ok: false } });
        expect(s.progressLabel()).toBe('verifying, 3 checks passed, 1 failed');
        expect(s.apply({ kind: 'check' })).toBe('none');
    });

    it('labels a phase after a repair with its round', () => {
        const s = new GenerationStream();
        s.apply({ kind: 'phase', text: 'repairing' });
        s.apply({ kind: 'reset' });
        s.apply({ kind: 'phase', text: 'verifying' });
        expect(s.progressLabel()).toBe('verifying (repair round 1)');
    });

    it('in frame mode the placed program replacing the streamed definitions is not a repair round', () => {
        const s = new GenerationStream();
        s.apply({ kind: 'phase', text: 'generating: the model writes build_model() into the builtin program' });
        s.apply({ kind: 'text', text: 'class Net(nn.Module):\n' });
        s.apply({ kind: 'reset' });
        s.apply({ kind: 'text', text: '"""the whole program"""\n' });
        s.apply({ kind: 'phase', text: 'verifying' });
        expect(s.progressLabel()).toBe('verifying');
        expect(s.text).toBe('"""the whole program"""\n');
    });
});

describe('region bookkeeping', () => {
    it('indents non-empty lines and stays append-stable', () => {
        expect(indentLines('a\n\nb\n', '  ')).toBe('  a\n\n  b\n');
        const partial = indentLines('a\n', '  ');
        const more = indentLines('a\nb', '  ');
        expect(more.startsWith(partial)).toBe(true);
    });

    it('frames a program at a cursor', () => {
        expect(cursorFraming('', '')).toEqual({ prefix: '', suffix: '' });
        expect(cursorFraming('x = 1', '')).toEqual({ prefix: '\n', suffix: '' });
        expect(cursorFraming('  ', 'y = 2')).toEqual({ prefix: '', suffix: '\n' });
    });

    it('ends the final body with one line break', () => {
        expect(finalBody('code\n\n\n', '')).toBe('code\n');
        expect(finalBody('code\n', '\n')).toBe('code');
        expect(finalBody('', '')).toBe('');
    });
});
