import { defineConfig } from 'vitest/config';

// Unit tests of the extension's pure logic (no `vscode` module here); see tests/extension/unit.
export default defineConfig({
    test: {
        include: ['tests/extension/unit/**/*.test.ts'],
        environment: 'node',
    },
});
