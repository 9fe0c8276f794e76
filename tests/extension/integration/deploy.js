// Integration tests of *Deepdive: Deploy Model…*, run inside code-server's extension host: index.js calls
// `run(test, ctx, helpers)`. Plain CommonJS.
// server/examples/digits_cnn.py is copied into <workspace>/deploy-e2e/; deepdive.deployModel (its prompts skipped:
// no model file, the eager and ONNX forms, bench limited to those two with a short budget) runs the daemon's
// deploy-export, deploy-bench and deploy-serve jobs and resolves once the server listens. Then a load of 8
// closed-loop clients posts Open Inference Protocol requests for a few seconds, every answer is checked, the
// daemon's hub (/stream, the dashboard's feed) must carry the server's `serve.stats` figures for that load, and
// cancelling the serve job stops the server.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const fs = require('fs');
const path = require('path');

const COMMAND = 'deepdive.deployModel';
const KINDS = ['deploy-export', 'deploy-bench', 'deploy-serve'];

/** N closed-loop clients posting one-row JSON infer requests for `seconds`; the answers' status codes and first outputs. */
async function load(url, model, seconds, clients) {
  const body = JSON.stringify({ inputs: [{ name: 'input__0', shape: [1, 1, 8, 8], datatype: 'FP32', data: new Array(64).fill(0.25) }] });
  const answers = [];
  const end = Date.now() + seconds * 1000;
  await Promise.all(Array.from({ length: clients }, async () => {
    while (Date.now() < end) {
      const r = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      const json = await r.json();
      answers.push({ status: r.status, outputs: json.outputs });
      if (r.status !== 200) return;
    }
  }));
  return answers;
}

/** The `serve.stats` events of run `run` on the hub's /stream (its snapshot and what follows) until `enough(event)`. */
function streamUntil(streamUrl, run, enough, timeoutMs) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(streamUrl);
    const seen = [];
    const timer = setTimeout(() => { ws.close(); reject(new Error(`no serve.stats of ${run} good enough in ${timeoutMs / 1000}s; last: ${JSON.stringify(seen.slice(-1))}`)); }, timeoutMs);
    const onMessage = m => {
      if (m && m.type === 'snapshot') {
        (m.messages || []).forEach(onMessage);
        return;
      }
      if (!m || m.type !== 'samples' || m.run !== run) return;
      for (const e of m.events || []) {
        if (e.kind !== 'serve.stats') continue;
        seen.push(e);
        if (enough(e)) {
          clearTimeout(timer);
          ws.close();
          resolve(e);
        }
      }
    };
    ws.onmessage = ev => onMessage(JSON.parse(String(ev.data)));
    ws.onerror = ev => { clearTimeout(timer); reject(new Error(`the hub's /stream failed: ${ev.message || ev.type}`)); };
  });
}

exports.run = async function runDeploy(test, ctx, { poll }) {
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const repo = path.resolve(__dirname, '../../..');
  const dir = folder ? path.join(folder.uri.fsPath, 'deploy-e2e') : undefined;
  const script = dir ? path.join(dir, 'digits_cnn.py') : undefined;

  await test('deploy: the command is registered and the daemon knows the three deploy job kinds', async () => {
    needsApi();
    const all = await vscode.commands.getCommands(true);
    assert.ok(all.includes(COMMAND), `${COMMAND} is registered`);
    const { kinds } = await ctx.api.request('deepdive/jobs/kinds', {});
    const missing = KINDS.filter(k => !kinds.some(x => x.kind === k));
    assert.deepStrictEqual(missing, [], `job kinds: ${kinds.map(k => k.kind).join(', ')}`);
    ctx.deployKinds = true;
  });

  await test('deploy: deepdive.deployModel exports, measures and serves digits_cnn.py; the command resolves once it listens', async () => {
    assert.ok(ctx.deployKinds && dir, 'needs the deploy job kinds and a workspace folder');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(repo, 'server/examples/digits_cnn.py'), script);
    const args = { path: script, model: null, forms: ['eager', 'onnx'], benchForms: ['eager', 'onnx'], benchBudgetS: 1,
      serve: { max_batch: 16 }, quiet: true };
    if (!vscode.workspace.isTrusted) {
      const refused = await vscode.commands.executeCommand(COMMAND, args);
      assert.strictEqual(refused && refused.state, 'refused', 'an untrusted workspace refuses to deploy');
      return;
    }
    const outcome = await vscode.commands.executeCommand(COMMAND, args);
    assert.ok(outcome && outcome.state === 'serving', `outcome: ${JSON.stringify(outcome)}`);
    assert.strictEqual(outcome.folder, path.join(folder.uri.fsPath, 'deploy', 'digits_cnn'), 'exported into deploy/<model name> of the workspace');
    const manifest = JSON.parse(fs.readFileSync(path.join(outcome.folder, 'deploy.json'), 'utf8'));
    assert.deepStrictEqual(Object.keys(manifest.forms).sort(), ['eager', 'onnx']);
    assert.ok(manifest.choice && manifest.choice.label === outcome.chosen, `bench saved its choice: ${JSON.stringify(manifest.choice)}`);
    assert.match(outcome.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.strictEqual(outcome.model, 'digits_cnn');
    const jobs = (await ctx.api.request('deepdive/jobs/list', {})).jobs;
    const serve = jobs.find(j => j.id === outcome.serveJobId);
    assert.ok(serve && serve.kind === 'deploy-serve' && serve.state === 'running', `the serve job: ${JSON.stringify(serve)}`);
    ctx.deployed = outcome;
    console.log(`[integration] deploy: ${outcome.chosen} chosen (${outcome.reason}); serving at ${outcome.url}`);
  }, 300000);

  await test('deploy: under a load of 8 clients every request is answered, and the hub carries the server\'s figures', async () => {
    assert.ok(ctx.deployed, 'needs the server (see above)');
    const { url, model } = ctx.deployed;
    const hub = await ctx.api.request('deepdive/hub', {});
    assert.ok(hub.running && hub.streamUrl, `the daemon's hub: ${JSON.stringify({ running: hub.running, reason: hub.reason })}`);
    const answers = await load(url, model, 6, 8);
    const bad = answers.filter(a => a.status !== 200);
    assert.deepStrictEqual(bad.slice(0, 3), [], `${bad.length} of ${answers.length} requests failed`);
    assert.ok(answers.length >= 50, `only ${answers.length} requests answered in 6 s`);
    for (const a of answers.slice(0, 20)) {
      assert.deepStrictEqual(a.outputs[0].shape, [1, 10], 'one row of 10 class scores per request');
    }
    const event = await streamUntil(hub.streamUrl, `serve-${model}`, e => (e.stats.totals.ok || 0) >= answers.length, 20000);
    assert.strictEqual(event.url, url);
    const rows = Object.entries(event.stats.batch_size_histogram).map(([k, n]) => [Number(k), n]);
    assert.ok(rows.some(([k]) => k > 1), `8 concurrent clients were batched: ${JSON.stringify(rows)}`);
    assert.ok(rows.every(([k]) => k <= 16), `no batch over max_batch 16: ${JSON.stringify(rows)}`);
    assert.ok(event.stats.latency_ms.p99 > 0 && event.stats.queue_delay_ms.p99 >= 0, `latency: ${JSON.stringify(event.stats.latency_ms)}`);
    console.log(`[integration] deploy: ${answers.length} answered; batches ${rows.map(([k, n]) => `${k}×${n}`).join(' ')}; p99 ${event.stats.latency_ms.p99} ms`);
  }, 60000);

  await test('deploy: cancelling the serve job stops the server', async () => {
    assert.ok(ctx.deployed, 'needs the server (see above)');
    const { url, serveJobId } = ctx.deployed;
    await ctx.api.request('deepdive/jobs/cancel', { id: serveJobId });
    const state = await poll('the serve job to end', async () => {
      const j = ((await ctx.api.request('deepdive/jobs/list', {})).jobs || []).find(x => x.id === serveJobId);
      return { done: !!j && j.state !== 'running', value: j && j.state };
    }, 30000);
    assert.strictEqual(state, 'cancelled');
    await assert.rejects(fetch(`${url}/v2/health/live`), 'nothing listens on the port any more');
  }, 40000);
};
