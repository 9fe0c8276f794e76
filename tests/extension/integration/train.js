// Integration tests of training from the editor (issue #20 finding 1), run inside code-server's extension
// host: index.js calls `run(test, ctx, helpers)`. Plain CommonJS.
// - an integrated terminal gets DEEPDIVE_HUB (the daemon's ingest URL with this session's token) through
//   the environment-variable collection, and a training run typed in it appears in the Jobs view;
// - the Train… CodeLens sits on the engine's setup call, and deepdive.train runs the script as a job.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');

async function lenses(doc) {
  return (await vscode.commands.executeCommand('vscode.executeCodeLensProvider', doc.uri)) || [];
}

exports.run = async function run(test, ctx, { poll }) {
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const repo = path.resolve(__dirname, '../../..');
  const script = folder ? path.join(folder.uri.fsPath, 'train_digits.py') : undefined;

  await test('train: an integrated terminal gets DEEPDIVE_HUB with this daemon\'s token', async () => {
    needsApi();
    const hub = await ctx.api.request('deepdive/hub', {});
    const out = path.join(os.tmpdir(), `deepdive-terminal-env-${process.pid}.txt`);
    fs.rmSync(out, { force: true });
    const terminal = vscode.window.createTerminal({ name: 'deepdive env check', shellPath: '/bin/sh' });
    terminal.sendText(`printf '%s' "$DEEPDIVE_HUB" > '${out}.part' && mv '${out}.part' '${out}'`);
    const seen = await poll('the terminal to write its DEEPDIVE_HUB', async () => {
      const text = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : undefined;
      return { done: text !== undefined, value: text };
    }, 20000);
    terminal.dispose();
    assert.strictEqual(seen, hub.ingestUrl, 'the terminal\'s DEEPDIVE_HUB is the hub\'s ingest URL with its token');
    assert.match(seen, /^ws:\/\/127\.0\.0\.1:\d+\/ingest\?token=./);
  }, 40000);

  await test('dashboard: Open Dashboard in Browser resolves the daemon\'s tokened dashboard page', async () => {
    needsApi();
    const hub = await ctx.api.request('deepdive/hub', {});
    assert.match(hub.dashboardUrl, /^http:\/\/127\.0\.0\.1:\d+\/\?token=./, 'the hub names its page');
    const opened = await vscode.commands.executeCommand('deepdive.openDashboardInBrowser', { quiet: true });
    assert.ok(opened && opened.url, `the command resolves to the URL it opens, got ${JSON.stringify(opened)}`);
    assert.ok(opened.url.includes(`token=${hub.token}`), `the page's URL carries this session's token: ${opened.url}`);
  }, 30000);

  await test('train: a run typed in an integrated terminal appears in the Jobs view and ends there', async () => {
    needsApi();
    assert.ok(script, 'the integration tests run with a workspace folder');
    fs.copyFileSync(path.join(repo, 'server/examples/digits.py'), script);
    const python = vscode.workspace.getConfiguration('deepdive').get('pythonPath');
    const before = new Set(((await ctx.api.request('deepdive/jobs/list', {})).jobs || []).map(j => j.id));
    const terminal = vscode.window.createTerminal({ name: 'deepdive train check', shellPath: '/bin/sh', cwd: folder.uri.fsPath });
    terminal.sendText(`OMP_NUM_THREADS=1 '${python}' train_digits.py --epochs 1 --compression none`);
    const listed = await poll('a terminal run of train_digits.py in deepdive/jobs/list', async () => {
      const jobs = ((await ctx.api.request('deepdive/jobs/list', {})).jobs || []).filter(j => !before.has(j.id) && j.kind === 'terminal');
      return { done: jobs.length === 1, value: jobs.map(j => ({ title: j.title, state: j.state })) };
    }, 90000);
    assert.strictEqual(listed[0].title, 'train train_digits.py (terminal)');
    const ended = await poll('the terminal run to end', async () => {
      const jobs = ((await ctx.api.request('deepdive/jobs/list', {})).jobs || []).filter(j => !before.has(j.id) && j.kind === 'terminal');
      return { done: jobs.length === 1 && jobs[0].state !== 'running', value: jobs.map(j => j.state) };
    }, 120000);
    terminal.dispose();
    assert.deepStrictEqual(ended, ['succeeded']);
  }, 240000);

  await test('train: the Train… CodeLens sits on the engine setup call; deepdive.train runs the script as a job', async () => {
    needsApi();
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(script));
    await vscode.window.showTextDocument(doc, { preview: false });
    const setupLine = doc.getText().split(/\r?\n/).findIndex(l => /dd\.setup\(/.test(l) && !/^\s*#/.test(l));
    assert.ok(setupLine > 0, 'digits.py calls dd.setup(');
    const found = await poll('the Train… CodeLens', async () => {
      const train = (await lenses(doc)).filter(l => l.command && l.command.command === 'deepdive.train');
      return { done: train.length === 1, value: train.map(l => ({ line: l.range.start.line, title: l.command.title })) };
    }, 15000);
    assert.strictEqual(found[0].line, setupLine, `the lens is on the dd.setup( line (${setupLine})`);
    const outcome = await vscode.commands.executeCommand('deepdive.train', {
      uri: doc.uri.toString(), nproc: 1, precision: 'fp32', checkpointDir: '', args: ['--epochs', '1', '--compression', 'none'],
      quiet: true, wait: true,
    });
    assert.ok(outcome && outcome.job, `the command resolves to its job, got ${JSON.stringify(outcome)}`);
    assert.strictEqual(outcome.state, 'succeeded', `the job ended ${outcome.state}: ${outcome.job.reason}`);
    assert.strictEqual(outcome.job.kind, 'train');
    assert.strictEqual(outcome.job.title, 'Train train_digits.py (1 process, fp32)');
    const listed = (await ctx.api.request('deepdive/jobs/list', {})).jobs.find(j => j.id === outcome.jobId);
    assert.ok(listed, 'the job is in the Jobs view\'s list');
  }, 240000);
};
