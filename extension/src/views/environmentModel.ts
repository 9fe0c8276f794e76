// The Environment view's tree, built from a DoctorReport. No `vscode` import: unit tests load this.
import type { DoctorReport } from '../protocol';
import { deepCheckRows, formatTime, noGpuText } from '../report/format';

export interface EnvNode {
    id: string;
    label: string;
    description?: string;
    tooltip?: string;
    /** A codicon id. */
    icon?: string;
    /** A theme color id for the icon. */
    color?: string;
    children?: EnvNode[];
}

export function environmentNodes(r: DoctorReport): EnvNode[] {
    const py = r.python;
    const nodes: EnvNode[] = [
        { id: 'python', label: `Python ${py.version}`, description: py.executable, tooltip: `${py.implementation} ${py.version} on ${py.platform}\n${py.executable}`, icon: 'terminal' },
        torchNode(r),
        cudaNode(r),
        gpuNode(r),
        {
            id: 'packages',
            label: 'Packages',
            description: `${r.packages.filter((p) => p.installed).length} of ${r.packages.length} installed`,
            icon: 'package',
            children: r.packages.map((p) => ({
                id: `package:${p.name}`,
                label: p.name,
                description: p.installed ? (p.version ?? 'installed') : 'not installed',
                tooltip: p.purpose,
                icon: p.installed ? 'check' : 'circle-slash',
            })),
        },
        {
            id: 'host',
            label: `Host ${r.host.hostname}`,
            description: `${r.host.logicalCores} CPUs · ${r.host.memoryTotalGib.toFixed(1)} GiB`,
            tooltip: `${r.host.cpuModel}\nnative bf16: ${r.host.cpuBf16 ? 'yes' : 'no'}`,
            icon: 'server',
        },
        deepCheckNode(r),
        { id: 'stateDir', label: 'State directory', description: r.stateDir ?? 'not set', tooltip: r.stateDir ?? undefined, icon: 'database' },
        { id: 'deepdive', label: `Deepdive ${r.deepdiveVersion}`, icon: 'info' },
    ];
    return nodes;
}

function torchNode(r: DoctorReport): EnvNode {
    const t = r.torch;
    if (!t.installed) {
        return { id: 'torch', label: 'torch: not installed', tooltip: t.error ?? undefined, icon: 'flame', color: 'list.warningForeground' };
    }
    return { id: 'torch', label: `torch ${t.version ?? '(unknown version)'}`, description: t.error ?? undefined, tooltip: t.error ?? undefined, icon: 'flame' };
}

function cudaNode(r: DoctorReport): EnvNode {
    const t = r.torch;
    if (t.cudaAvailable === true) {
        return { id: 'cuda', label: 'CUDA: available', description: `CUDA ${t.cudaVersion ?? '?'} · ${t.deviceCount ?? 0} device(s)`, icon: 'zap' };
    }
    if (t.cudaAvailable === false) {
        return { id: 'cuda', label: 'CUDA: not available', description: t.cudaVersion ? `torch built for CUDA ${t.cudaVersion}` : 'CPU-only torch build', icon: 'circle-slash' };
    }
    return { id: 'cuda', label: 'CUDA: unknown', description: t.installed ? undefined : 'torch is not installed', icon: 'question' };
}

function gpuNode(r: DoctorReport): EnvNode {
    const g = r.gpus;
    const devices = g.devices ?? [];
    if (!g.available || devices.length === 0) {
        const text = noGpuText(g.reason);
        return { id: 'gpus', label: text, tooltip: text, icon: 'warning', color: 'list.warningForeground' };
    }
    return {
        id: 'gpus',
        label: `GPUs: ${devices.length}`,
        description: g.driverVersion ? `driver ${g.driverVersion}` : undefined,
        icon: 'circuit-board',
        children: devices.map((d) => ({
            id: `gpu:${d.index}`,
            label: `${d.index}: ${d.name}`,
            description: `${(d.memoryTotalMib / 1024).toFixed(1)} GiB${d.computeCapability ? ` · sm ${d.computeCapability}` : ''}`,
            tooltip: d.uuid,
            icon: 'circuit-board',
        })),
    };
}

function deepCheckNode(r: DoctorReport): EnvNode {
    const d = r.deepCheck;
    const figures = d?.matmul ?? [];
    if (!d || figures.length === 0) {
        return { id: 'deepCheck', label: 'Deep check: not run', description: 'Run Deep Check measures matmul GFLOP/s', icon: 'pulse' };
    }
    const rows = deepCheckRows(d);
    const best = figures.reduce((a, b) => (b.gflops > a.gflops ? b : a));
    return {
        id: 'deepCheck',
        label: `Deep check: ${rows[figures.indexOf(best)].gflops} GFLOP/s`,
        description: `${best.device} ${best.dtype} · ${formatTime(d.measuredAt)}`,
        tooltip: `matmul throughput measured ${formatTime(d.measuredAt)}${d.torch ? ` with torch ${d.torch}` : ''}`,
        icon: 'pulse',
        children: rows.map((row, i) => ({ id: `deepCheck:${i}`, label: `${row.device} ${row.dtype}`, description: `${row.gflops} GFLOP/s (${row.size})`, icon: 'dashboard' })),
    };
}
