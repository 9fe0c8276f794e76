import { describe, expect, it } from 'vitest';
import { parseGenerateArgs } from '../../../extension/src/codegen/args';
import { HISTORY_LIMIT, pushHistory, readHistory } from '../../../extension/src/codegen/history';
import { findCommentPrompts, parsePromptLine } from '../../../extension/src/codegen/prompts';

describe('findCommentPrompts', () => {
    it('finds ASCII and full-width colons, leading spaces, any case', () => {
        const text = [
            'import torch',
            '# deepdive: a resnet18 for cifar-10 with mixed precision',
            '    # DeepDive: a small MLP',
            '# deepdive：用于 MNIST 的卷积网络',
            '#deepdive:no space after the hash',
            '\t# DEEPDIVE :  tabs and spaces  ',
        ].join('\n');
        expect(findCommentPrompts(text)).toEqual([
            { line: 1, indent: '', prompt: 'a resnet18 for cifar-10 with mixed precision' },
            { line: 2, indent: '    ', prompt: 'a small MLP' },
            { line: 3, indent: '', prompt: '用于 MNIST 的卷积网络' },
            { line: 4, indent: '', prompt: 'no space after the hash' },
            { line: 5, indent: '\t', prompt: 'tabs and spaces' },
        ]);
    });

    it('ignores empty prompts, other comments and trailing comments after code', () => {
        const text = ['# deepdive:', '# deepdive：   ', '# deepdiver: no', '# see deepdive: docs', 'x = 1  # deepdive: not a prompt', 'deepdive: no hash'].join('\n');
        expect(findCommentPrompts(text)).toEqual([]);
    });

    it('handles CRLF line ends', () => {
        expect(findCommentPrompts('a = 1\r\n# deepdive: a CNN\r\n')).toEqual([{ line: 1, indent: '', prompt: 'a CNN' }]);
    });

    it('parsePromptLine answers one line', () => {
        expect(parsePromptLine('  # deepdive: x')).toEqual({ indent: '  ', prompt: 'x' });
        expect(parsePromptLine('print(1)')).toBeUndefined();
    });
});

describe('prompt history', () => {
    it('puts the newest first without duplicates', () => {
        expect(pushHistory(['a', 'b', 'c'], 'b')).toEqual(['b', 'a', 'c']);
        expect(pushHistory(['a'], '  new  ')).toEqual(['new', 'a']);
        expect(pushHistory(['a'], '   ')).toEqual(['a']);
    });

    it(`keeps at most ${HISTORY_LIMIT}`, () => {
        let h: string[] = [];
        for (let i = 0; i < 30; i++) {
            h = pushHistory(h, `p${i}`);
        }
        expect(h).toHaveLength(HISTORY_LIMIT);
        expect(h[0]).toBe('p29');
        expect(h[HISTORY_LIMIT - 1]).toBe('p10');
    });

    it('reads stored values defensively', () => {
        expect(readHistory(undefined)).toEqual([]);
        expect(readHistory('x')).toEqual([]);
        expect(readHistory(['a', 3, '', 'b'])).toEqual(['a', 'b']);
    });
});

describe('parseGenerateArgs', () => {
    it('takes a prompt string or an object', () => {
        expect(parseGenerateArgs('a CNN')).toEqual({ prompt: 'a CNN' });
        expect(parseGenerateArgs(undefined)).toEqual({});
        expect(parseGenerateArgs({ prompt: ' x ', uri: 'file:///a.py', line: 3, quiet: true })).toEqual({
            prompt: 'x',
            uri: 'file:///a.py',
            line: 3,
            character: 0,
            quiet: true,
        });
    });

    it('drops what it cannot use', () => {
        expect(parseGenerateArgs({ prompt: '  ', line: -1, character: 2, quiet: 'yes' })).toEqual({});
        expect(parseGenerateArgs({ uri: { scheme: 'file', toString: () => 'file:///b.py' } })).toEqual({ uri: 'file:///b.py' });
    });
});
