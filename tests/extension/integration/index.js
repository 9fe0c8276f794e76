// Integration tests of the Deepdive extension, run INSIDE a real VS Code extension host (code-server's)
// by tests/extension/e2e/run.sh (devtest.js): the extensionTestsPath contract of @vscode/test-electron,
// `exports.run(): Promise<void>` that rejects when a test fails. Plain CommonJS: no build step.
// Each test's outcome is also appended to $E2E_RESULTS (JSON lines) for the harness's summary.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const cp = require('child_process');
const fs = require('fs');

const EXTENSION_ID = 'deepdive.deepdive';
const COMMANDS = ['deepdive.showEnvironmentReport', 'deepdive.restartServer', 'deepdive.runDeepCheck', 'deepdive.openDashboard'];
const FINAL_STATES = ['succeeded', 'failed', 'cancelled', 'lost'];

const sleep = ms => new Promise(r => setTimeout(r, ms));
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}
async function poll(what, fn, timeoutMs, intervalMs = 500) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last.done) return last.value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}; last seen: ${JSON.stringify(last.value)}`);
    await sleep(intervalMs);
  }
}

function expectedTorchVersion() {
  if (process.env.E2E_TORCH_VERSION) return process.env.E2E_TORCH_VERSION;
  const python = vscode.workspace.getConfiguration('deepdive').get('pythonPath');
  assert.ok(python, 'deepdive.pythonPath is set (the harness sets it in the user settings)');
  return cp.execFileSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

async function findJob(api, id) {
  const list = await api.request('deepdive/jobs/list', {});
  assert.ok(list && Array.isArray(list.jobs), `deepdive/jobs/list returns {jobs: [...]}, got ${JSON.stringify(list)}`);
  return list.jobs.find(j => j.id === id);
}

exports.run = async function run() {
  const resultsFile = process.env.E2E_RESULTS;
  const results = [];
  const ctx = {};
  const test = async (name, fn, timeoutMs = 30000) => {
    const t0 = Date.now();
    let error;
    try {
      await withTimeout(Promise.resolve().then(fn), timeoutMs, name);
    } catch (e) {
      error = e;
    }
    const ms = Date.now() - t0;
    results.push({ name, ok: !error });
    const line = { suite: 'integration', name, ok: !error, ms, error: error ? String(error.stack || error).slice(0, 4000) : undefined };
    if (resultsFile) fs.appendFileSync(resultsFile, JSON.stringify(line) + '\n');
    console.log(`[integration] ${error ? 'FAIL' : 'PASS'} ${name} (${(ms / 1000).toFixed(1)}s)${error ? ': ' + error.message : ''}`);
  };
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');

  await test('the extension is installed from the development path and activates', async () => {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    assert.ok(ext, `extension ${EXTENSION_ID} is visible`);
    ctx.ext = ext;
    ctx.api = await ext.activate();
    assert.ok(ext.isActive, 'extension is active');
    assert.ok(ctx.api, 'activate() returns an API');
    for (const m of ['ready', 'daemonPid', 'request', 'lastReport']) assert.strictEqual(typeof ctx.api[m], 'function', `api.${m} is a function`);
  }, 60000);

  await test('its commands are registered', async () => {
    const all = await vscode.commands.getCommands(true);
    const missing = COMMANDS.filter(id => !all.includes(id));
    assert.deepStrictEqual(missing, [], `commands not registered: ${missing.join(', ')}`);
  });

  await test('api.ready() resolves and the daemon process is alive', async () => {
    needsApi();
    await ctx.api.ready();
    const pid = ctx.api.daemonPid();
    assert.ok(Number.isInteger(pid) && pid > 0, `daemonPid() is a pid, got ${pid}`);
    process.kill(pid, 0);   // throws ESRCH when no such process
    ctx.pid = pid;
  }, 60000);

  await test('deepdive/version answers with the version and the daemon\'s pid', async () => {
    needsApi();
    const v = await ctx.api.request('deepdive/version', {});
    assert.ok(v && typeof v === 'object', `a result object, got ${JSON.stringify(v)}`);
    assert.strictEqual(v.version, ctx.ext.packageJSON.version, 'daemon version = extension version');
    assert.strictEqual(v.pid, ctx.api.daemonPid(), 'the daemon that answers is the one daemonPid() names');
    assert.ok(Number.isInteger(v.protocol) && v.protocol >= 1, `protocol number, got ${v.protocol}`);
    assert.match(v.python, /^3\.\d+/, 'python version string');
  });

  await test('deepdive/hub answers running, on 127.0.0.1, with a tokened /stream URL', async () => {
    needsApi();
    const hub = await ctx.api.request('deepdive/hub', {});
    assert.ok(hub && hub.running === true, `the hub is running, got ${JSON.stringify(hub && { running: hub.running, reason: hub.reason })}`);
    assert.match(hub.url, /^ws:\/\/127\.0\.0\.1:\d+/, 'the hub listens on 127.0.0.1');
    assert.match(hub.streamUrl, /^ws:\/\/127\.0\.0\.1:\d+\/stream\?token=./, 'the stream URL is ws://127.0.0.1:PORT/stream?token=...');
    ctx.hub = hub;
  });

  await test('deepdive.openDashboard opens the dashboard in a webview tab', async () => {
    needsApi();
    const dashboardTabs = () => vscode.window.tabGroups.all.flatMap(g => g.tabs)
      .filter(t => t.input instanceof vscode.TabInputWebview && t.input.viewType.includes('deepdive.dashboardPanel'));
    await vscode.commands.executeCommand('deepdive.openDashboard');
    const tab = await poll('a Deepdive dashboard webview tab', async () => {
      const tabs = dashboardTabs();
      return { done: tabs.length === 1, value: tabs.length ? tabs.map(t => t.label) : vscode.window.tabGroups.all.flatMap(g => g.tabs).map(t => t.label) };
    }, 15000);
    assert.strictEqual(tab[0], 'Deepdive Dashboard', 'the tab is titled Deepdive Dashboard');
    await vscode.commands.executeCommand('deepdive.openDashboard');   // again: the same panel, revealed
    await sleep(500);
    assert.strictEqual(dashboardTabs().length, 1, 'running the command again reuses the panel');
    await vscode.window.tabGroups.close(dashboardTabs());
  }, 30000);

  await test('deepdive.showEnvironmentReport opens a deepdive-report document with the torch version', async () => {
    needsApi();
    const torch = expectedTorchVersion();
    await vscode.commands.executeCommand('deepdive.showEnvironmentReport');
    const doc = await poll('a deepdive-report document containing the torch version', async () => {
      const d = vscode.workspace.textDocuments.find(x => x.uri.scheme === 'deepdive-report');
      return { done: !!d && d.getText().includes(torch), value: d ? { uri: d.uri.toString(), text: d.getText().slice(0, 800) } : 'no document with scheme deepdive-report' };
    }, 30000);
    const reportDoc = vscode.workspace.textDocuments.find(x => x.uri.scheme === 'deepdive-report');
    assert.strictEqual(reportDoc && reportDoc.languageId, 'markdown', 'the report is markdown');
    // it opens rendered (the Markdown preview), not as its source
    const active = await poll('the report\'s Markdown preview to be the active tab', async () => {
      const tab = vscode.window.tabGroups.activeTabGroup.activeTab;
      const input = tab && tab.input;
      const viewType = input instanceof vscode.TabInputWebview ? input.viewType : undefined;
      return { done: !!viewType && viewType.includes('markdown.preview'), value: tab ? { label: tab.label, viewType, text: input instanceof vscode.TabInputText ? input.uri.toString() : undefined } : null };
    }, 15000);
    assert.ok(active, 'a Markdown preview tab');
    const last = ctx.api.lastReport();
    assert.ok(last, 'api.lastReport() returns the report after the command');
    assert.ok(JSON.stringify(last).includes(torch), `api.lastReport() mentions torch ${torch}`);
    console.log(`[integration] report ${doc.uri || ''} contains torch ${torch}`);
  }, 60000);

  await test('a doctor-deep job starts, is listed and succeeds', async () => {
    needsApi();
    const job = await ctx.api.request('deepdive/jobs/start', { kind: 'doctor-deep', options: {} });
    assert.ok(job && typeof job.id === 'string' && job.id, `jobs/start returns a job with an id, got ${JSON.stringify(job)}`);
    assert.strictEqual(job.kind, 'doctor-deep');
    const listed = await findJob(ctx.api, job.id);
    assert.ok(listed, `job ${job.id} is in deepdive/jobs/list`);
    const final = await poll(`job ${job.id} to finish`, async () => {
      const j = await findJob(ctx.api, job.id);
      return { done: !!j && FINAL_STATES.includes(j.state), value: j && { state: j.state, message: j.message, reason: j.reason } };
    }, 90000, 1000);
    assert.strictEqual(final.state, 'succeeded', `doctor-deep job ended ${JSON.stringify(final)}`);
    const j = await findJob(ctx.api, job.id);
    assert.strictEqual(j.exitCode, 0, 'exit code 0');
    // its figures reach the report the Environment view and the report page are drawn from
    const report = await ctx.api.request('deepdive/doctor', {});
    assert.ok(report.deepCheck && report.deepCheck.jobId === job.id, `deepdive/doctor names the newest deep check, got ${JSON.stringify(report.deepCheck)}`);
    assert.ok(report.deepCheck.matmul.length >= 1 && report.deepCheck.matmul.every(m => m.gflops > 0), 'with its GFLOP/s');
  }, 100000);

  await test('a cancelled doctor-deep job ends "cancelled"', async () => {
    needsApi();
    const job = await ctx.api.request('deepdive/jobs/start', { kind: 'doctor-deep', options: {} });
    assert.ok(job && job.id, `jobs/start returns a job, got ${JSON.stringify(job)}`);
    await ctx.api.request('deepdive/jobs/cancel', { id: job.id });
    const final = await poll(`job ${job.id} to end after cancel`, async () => {
      const j = await findJob(ctx.api, job.id);
      return { done: !!j && FINAL_STATES.includes(j.state), value: j && { state: j.state, reason: j.reason } };
    }, 30000, 500);
    assert.strictEqual(final.state, 'cancelled', `cancelled job ended ${JSON.stringify(final)}`);
  }, 40000);

  // E2E_INTEGRATION_SUITES=diagnose,train (in run.sh's environment) runs only those of the suites below
  const only = (process.env.E2E_INTEGRATION_SUITES || '').split(',').map(s => s.trim()).filter(Boolean);
  const suite = async name => {
    if (only.length === 0 || only.includes(name)) await require(`./${name}`).run(test, ctx, { poll, sleep });
  };
  await suite('codegen');
  await suite('tune');
  await suite('train');
  await suite('compress');
  await suite('diagnose');
  await suite('deploy');
  await suite('models');
  await suite('restart');   // last: it replaces the daemon

  const failed = results.filter(r => !r.ok);
  console.log(`[integration] ${results.length - failed.length} passed, ${failed.length} failed`);
  if (failed.length) throw new Error(`${failed.length} integration test(s) failed: ${failed.map(f => f.name).join('; ')}`);
};
