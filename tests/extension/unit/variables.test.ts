import { describe, expect, it } from 'vitest';
import { resolveVariables } from '../../../extension/src/common/variables';

describe('resolveVariables', () => {
    const ctx = { workspaceFolder: '/work/proj', userHome: '/home/u' };

    it('resolves ${workspaceFolder}', () => {
        expect(resolveVariables('${workspaceFolder}/.venv/bin/python', ctx)).toBe('/work/proj/.venv/bin/python');
    });

    it('resolves ${userHome}, repeatedly', () => {
        expect(resolveVariables('${userHome}/a:${userHome}/b', ctx)).toBe('/home/u/a:/home/u/b');
    });

    it('leaves ${workspaceFolder} as written when no folder is open', () => {
        expect(resolveVariables('${workspaceFolder}/py', { userHome: '/home/u' })).toBe('${workspaceFolder}/py');
    });

    it('leaves other text and unknown variables alone', () => {
        expect(resolveVariables('/usr/bin/python3 ${env:HOME}', ctx)).toBe('/usr/bin/python3 ${env:HOME}');
        expect(resolveVariables('', ctx)).toBe('');
    });
});
