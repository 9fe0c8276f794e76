/// <reference lib="dom" />
// The dashboard page: connects to the hub's /stream websocket (connection.ts), keeps bounded series
// (model.ts) and renders Devices and Host (machineView.ts), Runs seen, Current run and Verdict
// (runView.ts), Past runs (pastRunsView.ts), Tune (tuneView.ts), Compression (compressView.ts), Diagnosis
// (diagnoseView.ts) and Serving (serveView.ts). In VS Code the page also hears from the editor (host.ts: `reveal` a section).
// This file routes each message and draws: all DOM work happens in one requestAnimationFrame per
// frame, so a 10 Hz stream costs at most one redraw per frame.
// No inline script or style: the bundle of this file and dashboard.css are the whole page (CSP with a nonce works).
import { apply, currentRun, emptyState, noChange, runsByRecency, type Change } from './model';
import { Queries, runName } from './history';
import { labelBoxes } from './plotAxes';
import { compressForRuns } from './compress';
import { CompressView } from './compressView';
import { diagnoseForRuns } from './diagnose';
import { DiagnoseView } from './diagnoseView';
import { host } from './host';
import { serveForRuns } from './serve';
import { ServeView } from './serveView';
import { forRuns } from './tune';
import { TuneView } from './tuneView';
import { Connection } from './connection';
import { MachineView } from './machineView';
import { PAST_REFRESH_MS, PastRunsView } from './pastRunsView';
import { RunView } from './runView';
import { $, onResize, plotWidth } from './dom';

declare global {
    interface Window {
        __deepdiveDashboard?: unknown;
    }
}

const state = emptyState();
let pending: Change = noChange();
let chosenRun: string | null = null;
let frameRequested = false;
let shownRun: string | null = null;
const tune = new TuneView(schedule);
const compress = new CompressView(schedule);
const diagnose = new DiagnoseView(schedule);
const serve = new ServeView(schedule);
const machine = new MachineView();
const runs = new RunView();
const connection = new Connection({
    schedule,
    opened: () => void past.refresh(),
    message: onMessage,
    closed: () => queries.failAll('the connection to the daemon closed'),
});
const queries = new Queries(text => connection.send(text));
const past = new PastRunsView(queries);

function onMessage(msg: unknown): void {
    if (queries.handle(msg)) {
        return;
    }
    tune.apply(msg);
    compress.apply(msg);
    diagnose.apply(msg);
    serve.apply(msg);
    const forRunPanels = forRuns(compressForRuns(diagnoseForRuns(serveForRuns(msg))));
    if (forRunPanels !== null) {
        apply(state, forRunPanels, pending);
    }
    schedule();
}

// ---------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------
function schedule(): void {
    if (!frameRequested) {
        frameRequested = true;
        requestAnimationFrame(render);
    }
}

function render(): void {
    frameRequested = false;
    const change = pending;
    pending = noChange();
    connection.render();
    if (change.machine) {
        machine.render(state);
    }
    const run = currentRun(state, chosenRun);
    if (change.runs.size > 0 || (run?.id ?? null) !== shownRun) {
        runs.renderRuns(state, run);
        if (run && (change.runs.has(run.id) || run.id !== shownRun)) {
            runs.renderRun(state, run);
        } else if (!run) {
            runs.renderNoRun();
        }
        shownRun = run?.id ?? null;
    }
    tune.render();
    compress.render();
    diagnose.render();
    serve.render();
    $('dropped').textContent = state.dropped > 0 ? `${state.dropped} entries lost (this page read too slowly)` : '';
}

// keeps "retrying in N s" ticking while disconnected
setInterval(() => {
    if (connection.state !== 'open') {
        schedule();
    }
}, 500);

setInterval(() => {
    if (connection.state === 'open') {
        void past.refresh();
    }
}, PAST_REFRESH_MS);

function onRunClick(ev: Event): void {
    const li = (ev.target as HTMLElement).closest<HTMLElement>('li.run');
    if (li?.dataset.run) {
        chosenRun = li.dataset.run;
        pending.runs.add(chosenRun);
        schedule();
    }
}

// resize: uPlot needs explicit sizes
onResize(() => {
    for (const c of [...runs.charts.values(), ...past.plots.values()]) {
        const el = c.box.querySelector<HTMLElement>('.plot');
        if (c.plot && el) {
            c.plot.setSize({ width: plotWidth(el), height: 150 });
        }
    }
    pending.machine = true;
    schedule();
});

// test hook for the e2e and for debugging in the devtools console
window.__deepdiveDashboard = {
    /** Points with a value in the current run's series `key` (e.g. "loss"), or in a chart by its id. */
    pointCount(series: string): number {
        const run = currentRun(state, chosenRun);
        if (!run) {
            return 0;
        }
        const ring = run.series.get(series);
        return ring ? ring.pointCount() : runs.charts.get(series)?.count ?? 0;
    },
    connection: () => connection.state,
    currentRun: () => currentRun(state, chosenRun)?.id ?? null,
    runs: () => runsByRecency(state).map(r => ({ id: r.id, lastStep: r.lastStep })),
    verdict: () => currentRun(state, chosenRun)?.verdict ?? null,
    gpus: () => state.gpus.size,
    gpuReason: () => state.gpuReason,
    machineSeen: () => state.machineSeen,
    messages: () => state.messages,
    /** The times of the current run's series `key` (oldest first). */
    times: (key: string) => currentRun(state, chosenRun)?.series.get(key)?.times() ?? [],
    /** How many times the stream opened (1 + reconnects). */
    opens: () => connection.opens,
    /** Past runs listed (from the daemon's store). */
    pastRuns: () => past.runs.map(r => ({ run: r.run, name: r.name, outcome: r.outcome, kind: r.kind, label: runName(r, Date.now() / 1000) })),
    /** The past-runs tab shown (its kind). */
    pastTab: () => past.kind,
    /** Per chart shown without data (by id): the sentence it says instead. */
    chartReasons: () => Object.fromEntries([...runs.charts].filter(([, c]) => !c.box.hidden && c.box.dataset.empty === 'true')
        .map(([id, c]) => [id, c.why.textContent])),
    /** Every drawn uPlot chart's axis labels as page boxes (CSS px), with its card's box. */
    axisLabels: () => [...runs.charts.entries(), ...[...past.plots.entries()].map(([k, c]) => [`compare-${k}`, c] as const)]
        .filter(([, c]) => c.plot && !c.box.hidden)
        .map(([id, c]) => {
            const r = c.box.getBoundingClientRect();
            return { chart: id, card: { left: r.left, right: r.right }, boxes: labelBoxes(c.plot!) };
        }),
    /** Runs picked for the overlay. */
    compared: () => [...past.compare],
    /** Points per compared run in the overlay chart of `key` (loss, samples_per_s, step_time_s). */
    overlayPoints: (key: string) => past.plots.get(key)?.points ?? [],
    /** Closes the websocket as if the network dropped it (the page must reconnect by itself). */
    dropConnection: () => connection.drop(),
    /** The Tune section: tuneStudies(), tuneTrials(study), tuneBest(study), tuneHistoryPoints(). */
    ...tune.hooks(),
    /** The Compression section: compressModels(), compressSteps(model), compressLive(), compressBars(). */
    ...compress.hooks(),
    /** The Diagnosis section: diagnoseScripts(), diagnoseReport(), diagnoseSpeedups(), diagnoseSegments(). */
    ...diagnose.hooks(),
    /** The Serving section: serveServers(), serveShown(), serveBars(), serveVisible(). */
    ...serve.hooks(),
};

function start(): void {
    runs.start();
    $('runs-body').addEventListener('click', onRunClick);
    past.start();
    $('runs-body').addEventListener('keydown', ev => {
        if (ev.key === 'Enter') {
            onRunClick(ev);
        }
    });
    machine.start();
    runs.renderNoRun();
    runs.renderRuns(state, null);
    tune.start();
    compress.start();
    diagnose.start();
    serve.start();
    if (host) {
        window.addEventListener('message', (ev: MessageEvent<unknown>) => {
            const m = ev.data as { type?: unknown; section?: unknown } | null;
            if (m?.type === 'reveal' && m.section === 'diagnose') {
                diagnose.reveal();
            } else if (m?.type === 'reveal' && m.section === 'serve') {
                serve.reveal();
            }
        });
        host.postMessage({ type: 'ready' });
    }
    connection.connect();
}

if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
} else {
    start();
}
