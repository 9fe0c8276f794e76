// Integration tests of model compression from the editor, run inside code-server's extension host after the
// tune tests: index.js calls `run(test, ctx, helpers)`. Plain CommonJS.
// server/examples/digits.py is trained for 2 epochs into <workspace>/compress-e2e/digits.pt (its evaluation
// script digits_eval.py copied beside it), then deepdive.compressModel, with its prompts skipped, runs the
// daemon's `compress` job (int8 quantization for x86 only, to stay short) and must succeed with its reports.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const cp = require('child_process');
const fs = require('fs');
const path = require('path');

const COMMAND = 'deepdive.compressModel';

function pythonOf() {
  const python = vscode.workspace.getConfiguration('deepdive').get('pythonPath') || process.env.E2E_PYTHON;
  assert.ok(python, 'deepdive.pythonPath is set (the harness sets it in the user settings) or E2E_PYTHON');
  return python;
}

/** Runs a program without blocking the extension host; rejects with its output's tail when it fails. */
function run(file, args, options) {
  return new Promise((resolve, reject) => {
    cp.execFile(file, args, { encoding: 'utf8', maxBuffer: 16 << 20, ...options }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed (${err.code ?? err.signal}): ${(stdout + stderr).slice(-2000)}`));
      else resolve(stdout);
    });
  });
}

exports.run = async function runCompress(test, ctx) {
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const repo = path.resolve(__dirname, '../../..');
  const dir = folder ? path.join(folder.uri.fsPath, 'compress-e2e') : undefined;
  const model = dir ? path.join(dir, 'digits.pt') : undefined;
  const evalScript = dir ? path.join(dir, 'digits_eval.py') : undefined;

  await test('compress: the command is registered and the daemon knows the compress job kind', async () => {
    needsApi();
    const all = await vscode.commands.getCommands(true);
    assert.ok(all.includes(COMMAND), `${COMMAND} is registered`);
    const { kinds } = await ctx.api.request('deepdive/jobs/kinds', {});
    assert.ok(kinds.some(k => k.kind === 'compress'), `job kinds: ${kinds.map(k => k.kind).join(', ')}`);
    ctx.compressKind = true;
  });

  await test('compress: digits.py --epochs 2 --save trains a model into the workspace', async () => {
    assert.ok(dir, 'the integration tests run with a workspace folder');
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const f of ['digits.py', 'digits_eval.py']) fs.copyFileSync(path.join(repo, 'server/examples', f), path.join(dir, f));
    const out = await run(pythonOf(), [path.join(dir, 'digits.py'), '--epochs', '2', '--precision', 'fp32', '--save', model],
      { cwd: dir, timeout: 170000, env: { ...process.env, DEEPDIVE_HUB: '' } });
    assert.ok(fs.statSync(model).size > 0, `${model} written; output: ${out.slice(-500)}`);
    ctx.compressModel = model;
  }, 180000);

  await test('compress: deepdive.compressModel quantizes it for x86 through the daemon; the JSON and Markdown reports exist', async () => {
    assert.ok(ctx.compressKind && ctx.compressModel, 'needs the compress job kind and the trained model (see above)');
    const args = { model, eval: evalScript, steps: ['quantize'], target: 'x86', quiet: true, wait: true };
    if (!vscode.workspace.isTrusted) {
      const refused = await vscode.commands.executeCommand(COMMAND, args);
      assert.strictEqual(refused && refused.state, 'refused', 'an untrusted workspace refuses to compress');
      return;
    }
    const outcome = await vscode.commands.executeCommand(COMMAND, args);
    const job = outcome && outcome.job;
    assert.ok(outcome && outcome.state === 'succeeded',
      `outcome: ${JSON.stringify(outcome && { state: outcome.state, error: outcome.error, reason: job && job.reason, argv: job && job.argv })}`);
    assert.strictEqual(job.kind, 'compress');
    assert.deepStrictEqual(outcome.options, { model, eval: evalScript, prune: null, layers: null, distill: false, quantize: 'int8', target: 'x86' });
    assert.ok(job.argv.includes('--quantize') && job.argv.includes('--target') && !job.argv.includes('--prune')
      && !job.argv.includes('--layers'), `argv: ${job.argv.join(' ')}`);
    assert.ok(outcome.report, `the outcome names the JSON report: ${JSON.stringify(job.result)}`);
    assert.strictEqual(path.dirname(outcome.report), dir, 'the report is written beside the model');
    const report = JSON.parse(fs.readFileSync(outcome.report, 'utf8'));
    assert.deepStrictEqual(report.steps.map(s => s.step), ['original', 'quantize'], 'the report measured the original and the quantized model');
    for (const s of report.steps) {
      assert.ok(typeof s.accuracy === 'number' && s.accuracy > 0.5, `${s.step}: the evaluation script's accuracy, got ${s.accuracy}`);
    }
    assert.ok(report.steps[1].size_mb < report.steps[0].size_mb, `int8 is smaller: ${report.steps.map(s => s.size_mb).join(' -> ')} MB`);
    assert.ok(outcome.markdown, 'the outcome names the Markdown report');
    assert.strictEqual(outcome.markdown, report.outputs.markdown, 'the Markdown report is the one the JSON report names');
    const md = fs.readFileSync(outcome.markdown, 'utf8');
    assert.match(md, /^# Compression report: digits\.pt/m);
    assert.match(md, /\| quantize \|/);
    assert.ok(fs.statSync(report.outputs.model).size > 0, `the compressed model ${report.outputs.model} exists`);
    console.log(`[integration] compress: ${report.steps.map(s => `${s.step} ${s.size_mb.toFixed(3)} MB ${(100 * s.accuracy).toFixed(2)} %`).join(', ')}`);
  }, 150000);

  await test('compress: a model that is not a .pt/.pth/.bin file fails with the reason before any job starts', async () => {
    needsApi();
    assert.ok(evalScript && fs.existsSync(evalScript), 'needs the evaluation script in the workspace (see above)');
    const before = (await ctx.api.request('deepdive/jobs/list', {})).jobs.length;
    const outcome = await vscode.commands.executeCommand(COMMAND, { model: evalScript, eval: evalScript, steps: ['quantize'], target: 'x86', quiet: true, wait: true });
    assert.strictEqual(outcome && outcome.state, 'failed', `outcome: ${JSON.stringify(outcome)}`);
    assert.match(outcome.error, /digits_eval\.py is not a model file/);
    assert.strictEqual((await ctx.api.request('deepdive/jobs/list', {})).jobs.length, before, 'no job was started');
  });
};
