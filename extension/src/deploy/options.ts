// "Deepdive: Deploy Model…": the command's arguments, the options of its three jobs (deploy-export,
// deploy-bench, deploy-serve: the protocol's DeployExportOptions, DeployBenchOptions, DeployServeOptions) and
// what their results and events say (the export folder, the runtime chosen, the server's URL). No `vscode`
// import: unit-tested directly.
import { DeployBenchOptions, DeployExportOptions, DeployServeOptions, JobEvent, JobOptionRanges } from '../protocol';
import { parseScriptRef, ScriptRef, text, withoutUndefined } from '../common/scriptArgs';

export const DEPLOY_COMMAND = 'deepdive.deployModel';
export const EXPORT_KIND = 'deploy-export';
export const BENCH_KIND = 'deploy-bench';
export const SERVE_KIND = 'deploy-serve';
/** The job data event the serve job sends once it listens (server/cli_deploy_serve.py). */
export const SERVE_EVENT = 'deploy.serve';

/** The command's arguments (palette: none; the editor or explorer: the script's URI; tests: an object). */
export interface DeployArgs extends ScriptRef {
    /** The trained model file (a path, absolute or relative to the workspace); `null`: none, use build_model(). */
    model?: string | null;
    /** Skip measuring the runtimes (serve the eager form, or the one chosen before). */
    skipBench?: boolean;
    /** The server's TCP port (0: a free one). */
    port?: number;
    /** Options for the serve job beyond the folder and port. */
    serve?: Partial<Omit<DeployServeOptions, 'folder' | 'port'>>;
    /** The forms to export (default: all; eager is always written). */
    forms?: string[];
    /** The candidates deploy bench measures (default: all this machine offers). */
    benchForms?: string[];
    /** deploy bench's budget in seconds (tests keep it short). */
    benchBudgetS?: number;
}

const PORTS = JobOptionRanges['deploy-serve'].port;

/** A vscode.Uri, a URI or path string, or an object of DeployArgs. */
export function parseDeployArgs(arg: unknown): DeployArgs {
    const { ref, rest } = parseScriptRef(arg);
    const out: DeployArgs = { ...ref };
    if (!rest) {
        return withoutUndefined(out);
    }
    if (rest.model === null) {
        out.model = null;
    } else if (text(rest.model)) {
        out.model = text(rest.model);
    }
    if (rest.skipBench === true) {
        out.skipBench = true;
    }
    const port = rest.port;
    if (typeof port === 'number' && Number.isInteger(port) && port >= PORTS[0] && port <= PORTS[1]) {
        out.port = port;
    }
    if (typeof rest.benchBudgetS === 'number' && rest.benchBudgetS > 0) {
        out.benchBudgetS = rest.benchBudgetS;
    }
    for (const key of ['forms', 'benchForms'] as const) {
        const v = rest[key];
        if (Array.isArray(v) && v.length > 0 && v.every(x => typeof x === 'string' && x.trim())) {
            out[key] = v.map(x => (x as string).trim());
        }
    }
    if (rest.serve && typeof rest.serve === 'object' && !Array.isArray(rest.serve)) {
        out.serve = rest.serve;
    }
    return withoutUndefined(out);
}

export function exportOptions(script: string, model: string | null, forms?: string[]): DeployExportOptions {
    return { path: script, ...(model ? { model } : {}), ...(forms?.length ? { forms } : {}) };
}

export function benchOptions(folder: string, budgetS?: number, forms?: string[]): DeployBenchOptions {
    return { folder, ...(budgetS !== undefined ? { budget_s: budgetS } : {}), ...(forms?.length ? { forms } : {}) };
}

export function serveOptions(folder: string, a: DeployArgs): DeployServeOptions {
    return { ...(a.serve ?? {}), folder, port: a.port ?? 0 };
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** What a finished export job's result says: the folder, the forms written and those that failed (with why). */
export interface Exported {
    folder: string;
    forms: string[];
    failed: Record<string, string>;
}

export function exportedOf(result: unknown): Exported | undefined {
    if (!isObj(result) || typeof result.folder !== 'string' || !result.folder) {
        return undefined;
    }
    const forms = Array.isArray(result.forms) ? result.forms.filter((f): f is string => typeof f === 'string') : [];
    const failed: Record<string, string> = {};
    if (isObj(result.failed)) {
        for (const [k, v] of Object.entries(result.failed)) {
            failed[k] = String(v);
        }
    }
    return { folder: result.folder, forms, failed };
}

/** What a finished bench job's result says: the runtime chosen and why. */
export function choiceOf(result: unknown): { label: string; reason: string } | undefined {
    if (!isObj(result) || typeof result.label !== 'string') {
        return undefined;
    }
    return { label: result.label, reason: typeof result.reason === 'string' ? result.reason : '' };
}

/** The server's URL and model from the serve job's `deploy.serve` data event; undefined for any other event. */
export function servingOf(e: JobEvent): { url: string; model: string; form: string } | undefined {
    const d = e.type === 'data' ? e.data : undefined;
    if (!d || d.event !== SERVE_EVENT || typeof d.url !== 'string' || !/^https?:\/\//.test(d.url)) {
        return undefined;
    }
    return { url: d.url, model: typeof d.model === 'string' ? d.model : '', form: typeof d.form === 'string' ? d.form : '' };
}

/** The Open Inference Protocol endpoints of a served model, for the message and the clipboard. */
export function endpoints(url: string, model: string): { infer: string; ready: string; metrics: string } {
    const base = url.replace(/\/+$/, '');
    return { infer: `${base}/v2/models/${encodeURIComponent(model)}/infer`, ready: `${base}/v2/health/ready`, metrics: `${base}/metrics` };
}

/** One line about an export that wrote some forms and not others. */
export function describeExport(e: Exported): string {
    const failed = Object.entries(e.failed);
    const wrote = `wrote ${e.forms.length ? e.forms.join(', ') : 'no form'}`;
    return failed.length ? `${wrote}; not exported: ${failed.map(([f, why]) => `${f} (${why})`).join('; ')}` : wrote;
}
