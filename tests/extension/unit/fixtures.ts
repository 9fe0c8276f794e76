// Sample daemon payloads shaped exactly like extension/src/protocol.ts.
import type { DoctorReport, JobInfo } from '../../../extension/src/protocol';

export function cpuReport(): DoctorReport {
    return {
        deepdiveVersion: '0.1.0',
        python: { version: '3.12.3', executable: '/home/u/.venv/bin/python', platform: 'Linux-6.1-x86_64', implementation: 'CPython' },
        host: { hostname: 'box', cpuModel: 'AMD EPYC 7B13', physicalCores: 4, logicalCores: 8, memoryTotalGib: 31.25, cpuBf16: false },
        torch: { installed: true, version: '2.13.0+cpu', cudaAvailable: false, cudaVersion: null, deviceCount: 0 },
        gpus: { available: false, devices: [], reason: 'NVML library not found' },
        packages: [
            { name: 'torch', purpose: 'the engine | training', installed: true, version: '2.13.0+cpu' },
            { name: 'optuna', purpose: 'hyperparameter search', installed: false, version: null },
        ],
        stateDir: '/home/u/.local/state/deepdive',
        probedAt: 1764326040,
    };
}

export function gpuReport(): DoctorReport {
    const r = cpuReport();
    r.torch = { installed: true, version: '2.5.1+cu124', cudaAvailable: true, cudaVersion: '12.4', deviceCount: 1 };
    r.gpus = {
        available: true,
        driverVersion: '550.54.15',
        nvmlVersion: '12.550.54.15',
        devices: [{ index: 0, name: 'NVIDIA H200', uuid: 'GPU-1234', memoryTotalMib: 143771, computeCapability: '9.0' }],
        reason: null,
    };
    return r;
}

export function job(overrides: Partial<JobInfo> = {}): JobInfo {
    return {
        id: 'j1',
        kind: 'doctor-deep',
        title: 'Deep environment check',
        state: 'running',
        argv: ['python', '-m', 'deepdive.jobs.doctor_deep'],
        cwd: '/tmp',
        createdAt: 1000,
        pid: 4242,
        startedAt: 1000,
        ...overrides,
    };
}
