import { readFileSync } from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import {
    benchOptions, choiceOf, DEPLOY_COMMAND, describeExport, endpoints, exportedOf, exportOptions, parseDeployArgs, serveOptions,
    servingOf,
} from '../../../extension/src/deploy/options';

describe('deploy options', () => {
    it('reads the command argument: a URI, a path, or an object (tests)', () => {
        expect(parseDeployArgs('file:///w/net.py')).toEqual({ uri: 'file:///w/net.py' });
        expect(parseDeployArgs('/w/net.py')).toEqual({ path: '/w/net.py' });
        expect(parseDeployArgs(undefined)).toEqual({});
        expect(parseDeployArgs({ path: 'net.py', model: null, skipBench: true, port: 8123, quiet: true, wait: true,
            serve: { max_batch: 8 }, benchBudgetS: 1, forms: ['eager', 'onnx'], benchForms: [] })).toEqual({ path: 'net.py', model: null,
            skipBench: true, port: 8123, quiet: true, wait: true, serve: { max_batch: 8 }, benchBudgetS: 1, forms: ['eager', 'onnx'] });
        expect(parseDeployArgs({ path: 'net.py', model: 'net.pt', port: 70000 })).toEqual({ path: 'net.py', model: 'net.pt' });
    });

    it('builds the three jobs\' options the way the daemon takes them', () => {
        expect(exportOptions('/w/net.py', null)).toEqual({ path: '/w/net.py' });
        expect(exportOptions('/w/net.py', '/w/net.pt')).toEqual({ path: '/w/net.py', model: '/w/net.pt' });
        expect(benchOptions('/w/deploy/net')).toEqual({ folder: '/w/deploy/net' });
        expect(benchOptions('/w/deploy/net', 2)).toEqual({ folder: '/w/deploy/net', budget_s: 2 });
        expect(exportOptions('/w/net.py', null, ['eager', 'onnx'])).toEqual({ path: '/w/net.py', forms: ['eager', 'onnx'] });
        expect(benchOptions('/w/deploy/net', undefined, ['eager', 'onnx'])).toEqual({ folder: '/w/deploy/net', forms: ['eager', 'onnx'] });
        expect(serveOptions('/w/deploy/net', {})).toEqual({ folder: '/w/deploy/net', port: 0 });
        expect(serveOptions('/w/deploy/net', { port: 9000, serve: { max_batch: 8, instances: 2 } }))
            .toEqual({ folder: '/w/deploy/net', port: 9000, max_batch: 8, instances: 2 });
    });

    it('reads the jobs\' results and the serve job\'s URL event', () => {
        const result = { folder: '/w/deploy/net', forms: ['eager', 'onnx'], failed: { pt2: 'data-dependent control flow' } };
        expect(exportedOf(result)).toEqual(result);
        expect(exportedOf({ forms: [] })).toBeUndefined();
        expect(describeExport(exportedOf(result)!)).toBe('wrote eager, onnx; not exported: pt2 (data-dependent control flow)');
        expect(choiceOf({ form: 'onnx', label: 'onnx:CPUExecutionProvider', reason: 'fastest' })).toEqual({ label: 'onnx:CPUExecutionProvider', reason: 'fastest' });
        expect(choiceOf(null)).toBeUndefined();
        const data = { event: 'deploy.serve', url: 'http://127.0.0.1:41234', model: 'net', form: 'onnx', config: {} };
        expect(servingOf({ jobId: 'j', type: 'data', seq: 3, data })).toEqual({ url: 'http://127.0.0.1:41234', model: 'net', form: 'onnx' });
        expect(servingOf({ jobId: 'j', type: 'data', seq: 3, data: { ...data, event: 'bench.figure' } })).toBeUndefined();
        expect(servingOf({ jobId: 'j', type: 'progress', seq: 3, progress: { fraction: 1, message: 'ready' } })).toBeUndefined();
        expect(endpoints('http://127.0.0.1:8000/', 'net')).toEqual({ infer: 'http://127.0.0.1:8000/v2/models/net/infer',
            ready: 'http://127.0.0.1:8000/v2/health/ready', metrics: 'http://127.0.0.1:8000/metrics' });
    });

    it('is contributed as a command, in the Python editor and explorer menus of trusted workspaces', () => {
        const manifest = JSON.parse(readFileSync(path.join(__dirname, '../../../package.json'), 'utf8')) as {
            contributes: { commands: { command: string; title: string }[]; menus: Record<string, { command: string; when?: string }[]> };
        };
        expect(manifest.contributes.commands).toContainEqual(expect.objectContaining({ command: DEPLOY_COMMAND, title: 'Deploy Model…' }));
        for (const menu of ['editor/context', 'explorer/context']) {
            const entry = manifest.contributes.menus[menu].find(m => m.command === DEPLOY_COMMAND);
            expect(entry?.when).toMatch(/isWorkspaceTrusted/);
        }
    });
});
