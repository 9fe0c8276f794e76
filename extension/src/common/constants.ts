// Identifiers shared by the manifest (package.json) and the code. No `vscode` import: unit tests load this.

export const EXTENSION_ID = 'deepdive.deepdive';
export const DISPLAY_NAME = 'Deepdive';
export const CONFIG_SECTION = 'deepdive';
/** Our own configuration keys: only a change to one of these restarts the daemon. */
export const RESTART_KEYS = ['deepdive.pythonPath'] as const;

export const Commands = {
    restartServer: 'deepdive.restartServer',
    showEnvironmentReport: 'deepdive.showEnvironmentReport',
    runDeepCheck: 'deepdive.runDeepCheck',
    refreshEnvironment: 'deepdive.refreshEnvironment',
    refreshJobs: 'deepdive.refreshJobs',
    cancelJob: 'deepdive.cancelJob',
    showJobOutput: 'deepdive.showJobOutput',
    openDashboard: 'deepdive.openDashboard',
    openDashboardInBrowser: 'deepdive.openDashboardInBrowser',
    generateCode: 'deepdive.generateCode',
    generateIntoNewFile: 'deepdive.generateIntoNewFile',
    generateFromComment: 'deepdive.generateFromComment',
    acceptGeneration: 'deepdive.acceptGeneration',
    rejectGeneration: 'deepdive.rejectGeneration',
    showGenerationChecks: 'deepdive.showGenerationChecks',
    tune: 'deepdive.tune',
    applyTuneBest: 'deepdive.applyTuneBest',
    train: 'deepdive.train',
    diagnosePerformance: 'deepdive.diagnosePerformance',
    applyAndMeasureFix: 'deepdive.applyAndMeasureFix',
} as const;

export const Views = {
    environment: 'deepdive.environment',
    jobs: 'deepdive.jobs',
    dashboard: 'deepdive.dashboard',
} as const;

/** URI schemes of the read-only documents the extension renders. */
export const Schemes = {
    report: 'deepdive-report',
    jobLog: 'deepdive-job',
    codegen: 'deepdive-codegen',
} as const;

/** The settings the daemon reads for its diagnostics (sent at start, kept in sync by the client). */
export const DIAGNOSTICS_SECTION = 'deepdive.diagnostics';

/** globalState key of the code generation prompt history. */
export const PROMPT_HISTORY_KEY = 'deepdive.codegen.promptHistory';

export const REPORT_PATH = '/Environment Report.md';
export const DEEP_CHECK_KIND = 'doctor-deep';
export const PYTHON_EXTENSION_ID = 'ms-python.python';

/** How long `python -c "import deepdive"` may take before it counts as a failure. */
export const IMPORT_CHECK_TIMEOUT_MS = 20_000;
/** How many jobs the Jobs view lists. */
export const JOB_LIST_LIMIT = 50;
