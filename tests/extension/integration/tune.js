// Integration tests of hyperparameter search from the editor (issue #6), run inside code-server's extension
// host after the other integration tests: index.js calls `run(test, ctx, helpers)`. Plain CommonJS.
// A copy of server/examples/digits.py in the workspace is tuned for real (3 one-epoch trials through the
// daemon's `tune` job, started by the deepdive.tune command with its prompts skipped, the top 2 confirmed
// with 2 fresh seeds each: `--confirm 2 --confirm-seeds 2`), then the study's answer (the confirmed best) is
// applied to the open document through deepdive/tune/applyBest, the CodeLens and code action saying which.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const fs = require('fs');
const path = require('path');

const TUNE_COMMANDS = ['deepdive.tune', 'deepdive.applyTuneBest'];
const PARAMS = ['dropout', 'hidden', 'lr', 'weight_decay'];

async function lenses(doc) {
  return (await vscode.commands.executeCommand('vscode.executeCodeLensProvider', doc.uri)) || [];
}

function firstSuggestLine(text) {
  return text.split(/\r?\n/).findIndex(l => /^\s+lr = run\.suggest\("lr"/.test(l));
}

/** The literal after `default=` in the suggest("name", ...) call of the document. */
function defaultOf(text, name) {
  const m = new RegExp(`suggest\\(\\s*"${name}"[^\\n]*?default=([^,)]+)`).exec(text);
  return m ? m[1].trim() : undefined;
}

exports.run = async function run(test, ctx, { poll }) {
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const repo = path.resolve(__dirname, '../../..');
  const script = folder ? path.join(folder.uri.fsPath, 'tune_digits.py') : undefined;

  await test('tune: its commands are registered', async () => {
    const all = await vscode.commands.getCommands(true);
    const missing = TUNE_COMMANDS.filter(id => !all.includes(id));
    assert.deepStrictEqual(missing, [], `commands not registered: ${missing.join(', ')}`);
  });

  await test('tune: a script that calls suggest( gets a Tune CodeLens on its first such line; others none', async () => {
    assert.ok(script, 'the integration tests run with a workspace folder');
    fs.copyFileSync(path.join(repo, 'server/examples/digits.py'), script);
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(script));
    await vscode.window.showTextDocument(doc, { preview: false });
    const want = firstSuggestLine(doc.getText());
    assert.ok(want > 0, 'digits.py has a run.suggest("lr", ...) line');
    const found = await poll('the Tune CodeLens', async () => {
      const tune = (await lenses(doc)).filter(l => l.command && l.command.command === 'deepdive.tune');
      return { done: tune.length === 1, value: tune.map(l => ({ line: l.range.start.line, title: l.command.title })) };
    }, 15000);
    assert.strictEqual(found[0].line, want, `the lens is on the first suggest( line (${want}), not in the docstring`);
    assert.match(found[0].title, /Tune/);
    const other = await vscode.workspace.openTextDocument({ language: 'python', content: '"""no run.suggest( here"""\nprint(1)  # suggest(\n' });
    await new Promise(r => setTimeout(r, 500));
    assert.deepStrictEqual((await lenses(other)).filter(l => l.command && l.command.command === 'deepdive.tune'), [], 'no Tune lens without a suggest( call');
    ctx.tuneDoc = doc;
  }, 30000);

  await test('tune: the daemon knows the tune job kind', async () => {
    needsApi();
    const { kinds } = await ctx.api.request('deepdive/jobs/kinds', {});
    assert.ok(kinds.some(k => k.kind === 'tune'), `job kinds: ${kinds.map(k => k.kind).join(', ')}`);
    ctx.tuneKind = true;
  });

  await test('tune: deepdive.tune runs a 3-trial study of digits.py through the daemon, confirms its top 2, and its answer is the best mean', async () => {
    assert.ok(ctx.tuneKind && ctx.tuneDoc, 'needs the tune job kind and the script (see above)');
    if (!vscode.workspace.isTrusted) {
      const refused = await vscode.commands.executeCommand('deepdive.tune', { path: script, trials: 3, parallel: 1, metric: 'loss', direction: 'minimize', quiet: true });
      assert.strictEqual(refused.state, 'refused', 'an untrusted workspace refuses to tune');
      return;
    }
    const outcome = await vscode.commands.executeCommand('deepdive.tune', {
      path: script, trials: 3, parallel: 1, metric: 'loss', direction: 'minimize', study: `e2e-${Date.now()}`,
      confirm: 2, confirmSeeds: 2, args: ['--epochs', '1'], quiet: true, wait: true,
    });
    const job = outcome && outcome.job;
    assert.ok(outcome && outcome.state === 'succeeded', `outcome: ${JSON.stringify(outcome && { state: outcome.state, error: outcome.error, reason: job && job.reason, argv: job && job.argv })}`);
    assert.strictEqual(job.kind, 'tune');
    assert.ok(job.argv.includes('--trials') && job.argv.includes('3'), `argv: ${job.argv.join(' ')}`);
    assert.ok(job.argv.join(' ').includes('--confirm 2 --confirm-seeds 2'), `argv: ${job.argv.join(' ')}`);
    assert.ok(outcome.bestParams, `the job's result has best parameters: ${JSON.stringify(job.result)}`);
    assert.deepStrictEqual(Object.keys(outcome.bestParams).sort(), PARAMS, 'the best parameters are the script\'s suggest() names');
    // the answer: the confirmation's choice, the best mean of the re-trained top trials (loss: the lowest)
    const conf = job.result.confirmed;
    assert.ok(conf && Array.isArray(conf.candidates) && conf.candidates.length === Math.min(2, job.result.nComplete), `confirmed: ${JSON.stringify(conf)}`);
    assert.deepStrictEqual(conf.seeds, [1, 2]);
    const means = conf.candidates.filter(c => typeof c.mean === 'number');
    assert.ok(means.length > 0, `no re-training finished: ${JSON.stringify(conf)}`);
    const lowest = means.reduce((a, b) => (b.mean < a.mean ? b : a));
    assert.strictEqual(conf.chosen, lowest.number, `chosen ${conf.chosen}, the lowest mean is trial ${lowest.number}'s`);
    assert.strictEqual(job.result.chosenNumber, conf.chosen);
    assert.deepStrictEqual(outcome.bestParams, job.result.chosenParams, 'the command\'s answer is the job\'s chosenParams');
    assert.ok(outcome.answer && outcome.answer.confirmed && outcome.answer.number === conf.chosen, `answer: ${JSON.stringify(outcome.answer)}`);
    ctx.tuneBest = outcome.bestParams;
    ctx.tuneWhat = new RegExp(`^the confirmed best, trial ${conf.chosen} \\(mean \\S+ over ${lowest.values.filter(v => v !== null).length} seeds\\)$`);
  }, 300000);

  await test('tune: deepdive/tune/applyBest returns edits for the suggested params; the command applies them to the document', async () => {
    assert.ok(ctx.tuneBest, 'needs a finished tune job (see above)');
    const doc = ctx.tuneDoc;
    const before = doc.getText();
    const r = await ctx.api.request('deepdive/tune/applyBest', { path: script, params: ctx.tuneBest, text: before });
    assert.ok(Array.isArray(r.edits), `edits: ${JSON.stringify(r)}`);
    assert.deepStrictEqual([...r.changed, ...(r.unchanged || [])].sort(), PARAMS, `every param is changed or unchanged: ${JSON.stringify(r)}`);
    assert.deepStrictEqual(r.missing || [], []);
    assert.ok(r.edits.length === r.changed.length && r.changed.length > 0, `one edit per changed param: ${JSON.stringify(r)}`);
    // a CodeLens and the code action on a suggest( line offer to apply them
    const applyLens = await poll('the Apply best parameters CodeLens', async () => {
      const found = (await lenses(doc)).filter(l => l.command && l.command.command === 'deepdive.applyTuneBest');
      return { done: found.length === 1, value: found.map(l => ({ line: l.range.start.line, title: l.command.title })) };
    }, 10000);
    assert.match(applyLens[0].title, /Apply best parameters: the confirmed best, trial \d+ \(mean \S+ over 2 seeds\)/);
    const line = firstSuggestLine(before);
    const actions = await vscode.commands.executeCommand('vscode.executeCodeActionProvider', doc.uri, new vscode.Range(line, 0, line, 0));
    const titles = (actions || []).map(a => a.title);
    assert.ok(titles.some(t => /Apply best tuned parameters, the confirmed best, trial/.test(t)), `code actions: ${JSON.stringify(titles)}`);
    const applied = await vscode.commands.executeCommand('deepdive.applyTuneBest', { uri: doc.uri.toString(), quiet: true });
    assert.ok(applied && applied.state === 'applied', `applied: ${JSON.stringify(applied)}`);
    assert.match(applied.what || '', ctx.tuneWhat, 'the command says it applied the confirmed best');
    assert.deepStrictEqual(applied.changed.sort(), [...r.changed].sort());
    const after = doc.getText();
    for (const name of PARAMS) {
      const v = defaultOf(after, name);
      assert.ok(v !== undefined, `suggest("${name}") still has a default`);
      // written as a person writes it: 4 significant digits (more only where rounding would leave the declaration)
      const best = Number(ctx.tuneBest[name]);
      const rounded = Number.isInteger(best) ? best : Number(best.toPrecision(4));
      assert.ok(Number(v) === rounded || Math.abs(Number(v) - best) <= 1e-12 * Math.max(1, Math.abs(best)), `${name}: default ${v}, best ${best} (rounded ${rounded})`);
    }
    // only the defaults changed
    const strip = s => s.replace(/default=[^,)]+/g, 'default=X');
    assert.strictEqual(strip(after), strip(before), 'nothing but the defaults changed');
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  }, 60000);
};
