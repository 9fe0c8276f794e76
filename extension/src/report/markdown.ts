// Renders a DoctorReport as Markdown. Values appear exactly as the daemon reported them
// (e.g. torch "2.13.0+cpu"); absent hardware is named with its reason. No `vscode` import.
import type { DoctorReport, GpuInfo, TorchInfo } from '../protocol';
import { deepCheckRows } from './format';
import { Commands } from '../common/constants';
import { formatTime, noGpuText } from './format';

export function renderReport(report: DoctorReport): string {
    const lines: string[] = ['# Deepdive environment report', ''];
    const probed = report.probedAt ? ` · probed ${formatTime(report.probedAt)}` : '';
    lines.push(`Deepdive ${report.deepdiveVersion}${probed}`, '');

    const py = report.python;
    lines.push('## Python', '', ...table(['Property', 'Value'], [
        ['Version', `${py.version} (${py.implementation})`],
        ['Executable', code(py.executable)],
        ['Platform', py.platform],
    ]), '');

    lines.push('## PyTorch', '', ...torchLines(report.torch), '');
    lines.push('## GPUs', '', ...gpuLines(report.gpus), '');

    const h = report.host;
    const cores = h.physicalCores === null ? `${h.logicalCores} logical` : `${h.physicalCores} physical, ${h.logicalCores} logical`;
    lines.push('## Host', '', ...table(['Property', 'Value'], [
        ['Hostname', h.hostname],
        ['CPU', h.cpuModel],
        ['Cores', cores],
        ['Memory', `${h.memoryTotalGib.toFixed(1)} GiB`],
        ['Native bf16', h.cpuBf16 ? 'yes' : 'no'],
    ]), '');

    lines.push('## Packages', '', ...table(['Package', 'Version', 'Purpose'],
        report.packages.map((p) => [p.name, p.installed ? (p.version ?? 'installed') : 'not installed', p.purpose])), '');

    lines.push('## Deep check', '', ...deepCheckLines(report), '');
    lines.push('## State', '', `State directory: ${report.stateDir ? code(report.stateDir) : 'not set'}`, '');
    lines.push('---', '', `Run **Deepdive: Show Environment Report** (\`${Commands.showEnvironmentReport}\`) again to refresh.`, '');
    return lines.join('\n');
}

function torchLines(t: TorchInfo): string[] {
    if (!t.installed) {
        return [`- torch: not installed${t.error ? ` (${t.error})` : ''}`];
    }
    const lines = [`- torch: ${t.version ?? 'unknown version'}`];
    if (t.cudaAvailable === true) {
        lines.push(`- CUDA available: yes (CUDA ${t.cudaVersion ?? 'unknown'}, ${t.deviceCount ?? 0} device(s))`);
    } else if (t.cudaAvailable === false) {
        lines.push(`- CUDA available: no${t.cudaVersion ? ` (built for CUDA ${t.cudaVersion})` : ' (CPU-only build)'}`);
    } else {
        lines.push('- CUDA available: unknown');
    }
    if (t.error) {
        lines.push(`- error: ${t.error}`);
    }
    return lines;
}

function gpuLines(g: GpuInfo): string[] {
    const devices = g.devices ?? [];
    if (!g.available || devices.length === 0) {
        return [noGpuText(g.reason)];
    }
    const versions = [g.driverVersion && `driver ${g.driverVersion}`, g.nvmlVersion && `NVML ${g.nvmlVersion}`].filter(Boolean);
    return [
        ...(versions.length ? [versions.join(', '), ''] : []),
        ...table(['#', 'Name', 'Memory', 'Compute capability', 'UUID'], devices.map((d) => [
            String(d.index), d.name, `${(d.memoryTotalMib / 1024).toFixed(1)} GiB`, d.computeCapability ?? '—', code(d.uuid),
        ])),
    ];
}

function table(header: string[], rows: string[][]): string[] {
    const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
    return [
        `| ${header.map(cell).join(' | ')} |`,
        `|${header.map(() => '---').join('|')}|`,
        ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
    ];
}

function code(s: string): string {
    return s.includes('`') ? s : `\`${s}\``;
}

function deepCheckLines(report: DoctorReport): string[] {
    const d = report.deepCheck;
    if (!d) {
        return [`Not run yet: **Deepdive: Run Deep Check** (\`${Commands.runDeepCheck}\`) imports torch in a job and measures matmul throughput on each device.`];
    }
    const head = `Measured ${formatTime(d.measuredAt)}${d.torch ? ` with torch ${d.torch}` : ''}${d.importS !== null && d.importS !== undefined ? ` (import ${d.importS.toFixed(2)} s)` : ''}:`;
    return [head, '', ...table(['Device', 'dtype', 'Matrix', 'GFLOP/s'], deepCheckRows(d).map(r => [r.device, r.dtype, r.size, r.gflops]))];
}
