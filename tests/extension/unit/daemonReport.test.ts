// Renders the real daemon's report (`deepdive doctor --json` from the repository venv), so the
// rendering is checked against what the Python side actually sends, not only against fixtures.
import { execFileSync } from 'child_process';
import { existsSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import type { DoctorReport } from '../../../extension/src/protocol';
import { noGpuText } from '../../../extension/src/report/format';
import { renderReport } from '../../../extension/src/report/markdown';
import { environmentNodes } from '../../../extension/src/views/environmentModel';

const venvPython = path.resolve(__dirname, '../../../.venv/bin/python');

describe.skipIf(!existsSync(venvPython))('the real daemon report', () => {
    it('renders torch, CUDA, GPUs (or why none), packages and state dir as reported', () => {
        const out = execFileSync(venvPython, ['-m', 'deepdive', 'doctor', '--json'], { cwd: os.tmpdir(), timeout: 60_000 });
        const report = JSON.parse(out.toString()) as DoctorReport;
        const md = renderReport(report);
        expect(md).toContain(`| Version | ${report.python.version} (${report.python.implementation}) |`);
        if (report.torch.installed) {
            expect(md).toContain(`- torch: ${report.torch.version}`);
            expect(md).toMatch(/- CUDA available: (yes|no)/);
        }
        if (report.gpus.available) {
            for (const d of report.gpus.devices ?? []) {
                expect(md).toContain(`| ${d.index} | ${d.name} |`);
            }
        } else {
            expect(md).toContain(noGpuText(report.gpus.reason));
            expect(md).not.toMatch(/No NVIDIA GPU: no NVIDIA GPU/i);
        }
        for (const p of report.packages) {
            expect(md).toContain(`| ${p.name} | ${p.installed ? (p.version ?? 'installed') : 'not installed'} |`);
        }
        expect(environmentNodes(report).map((n) => n.id)).toContain('gpus');
    }, 90_000);
});
