// Activation: wires the pieces together. No logic of its own beyond that.
import { ExtensionContext, window } from 'vscode';
import { CodegenController } from './codegen/controller';
import { CompressController } from './compress/controller';
import { DeployController } from './deploy/controller';
import { DiagnoseController } from './diagnose/controller';
import { registerCommands } from './commands';
import { Schemes, Views } from './common/constants';
import { createLogChannel, traceInfo } from './common/logging';
import { onDidChangePythonInterpreter } from './common/python';
import { DeepdiveServer } from './common/server';
import { checkIfConfigurationChanged, getSettings } from './common/settings';
import { DeepdiveStatusBar } from './common/statusBar';
import { registerModelCommands } from './models/command';
import { onDidChangeConfiguration, onDidGrantWorkspaceTrust } from './common/vscodeapi';
import { DoctorReport, Requests, RequestTypes } from './protocol';
import { DoctorReports } from './report/doctor';
import { ReadOnlyDocuments } from './report/documents';
import { TuneController } from './tune/controller';
import { TrainController } from './train/controller';
import { syncTerminalEnvironment } from './common/terminalEnv';
import { DashboardViews, registerDashboard } from './views/dashboard';
import { EnvironmentView } from './views/environment';
import { JobLogs } from './views/jobLogs';
import { CheckpointsView } from './views/checkpoints';
import { JobsView } from './views/jobs';

/** What `activate` returns; the integration tests use it. */
export interface DeepdiveApi {
    /** Resolves when the daemon answers; rejects with the reason when it ends up stopped or failed. */
    ready(): Promise<void>;
    /** The running daemon's pid (from `deepdive/version`). */
    daemonPid(): number | undefined;
    request<M extends keyof RequestTypes>(method: M, params: RequestTypes[M]['params']): Promise<RequestTypes[M]['result']>;
    /** The last `deepdive/doctor` answer, from the Environment view or the report command. */
    lastReport(): DoctorReport | undefined;
}

let server: DeepdiveServer | undefined;

export function activate(context: ExtensionContext): DeepdiveApi {
    const channel = createLogChannel();
    context.subscriptions.push(channel);
    traceInfo(`Deepdive ${(context.extension.packageJSON as { version: string }).version} activating`);

    const srv = new DeepdiveServer(context);
    server = srv;
    const statusBar = new DeepdiveStatusBar(srv.status);
    const doctor = new DoctorReports(srv);
    const docs = new ReadOnlyDocuments();
    const environment = new EnvironmentView(srv, doctor);
    const jobs = new JobsView(srv);
    const jobLogs = new JobLogs(srv, docs, jobs.model);
    const dashboard = new DashboardViews(srv, context.extensionUri);
    const codegen = new CodegenController(srv, context, docs);
    const tune = new TuneController(srv, jobs);
    const train = new TrainController(srv, jobs, context.workspaceState);
    const compress = new CompressController(srv, jobs);
    const diagnose = new DiagnoseController(srv, jobs, context.workspaceState, dashboard);
    const deploy = new DeployController(srv, jobs, dashboard);
    const checkpoints = new CheckpointsView(srv, context.workspaceState, jobs);

    context.subscriptions.push(
        statusBar,
        srv.onDidChangeStatus((s) => statusBar.update(s)),
        srv.onTelemetrySummary((s) => statusBar.updateTelemetry(s)),
        doctor,
        docs,
        docs.register(Schemes.report),
        docs.register(Schemes.jobLog),
        environment,
        window.registerTreeDataProvider(Views.environment, environment),
        jobs,
        window.registerTreeDataProvider(Views.jobs, jobs),
        jobLogs,
        dashboard,
        registerDashboard(dashboard),
        ...registerCommands({ server: srv, doctor, docs, environment, jobs, jobLogs, dashboard }),
        ...codegen.register(),
        ...tune.register(),
        ...train.register(),
        syncTerminalEnvironment(
            context.environmentVariableCollection,
            (listener) => srv.onDidChangeStatus((s) => listener(s.state === 'ready')),
            () => srv.request(Requests.hub, {}),
            traceInfo,
        ),
        ...compress.register(),
        ...diagnose.register(),
        ...deploy.register(),
        ...checkpoints.register(),
        ...registerModelCommands(srv),
        onDidChangeConfiguration((e) => {
            if (checkIfConfigurationChanged(e)) {
                srv.restart('deepdive.pythonPath changed');
            }
        }),
        onDidGrantWorkspaceTrust(() => srv.restart('workspace trust was granted')),
    );
    const onInterpreterChange = () => {
        if (!getSettings().pythonPath) {
            srv.restart('the Python extension\'s interpreter changed');
        }
    };
    void onDidChangePythonInterpreter(onInterpreterChange).then((d) => context.subscriptions.push(d));

    void srv.start();

    return {
        ready: () => srv.ready(),
        daemonPid: () => (srv.status.state === 'ready' ? srv.status.version?.pid : undefined),
        request: (method, params) => srv.request(method, params),
        lastReport: () => doctor.lastReport,
    };
}

export async function deactivate(): Promise<void> {
    await server?.dispose();
    server = undefined;
}
