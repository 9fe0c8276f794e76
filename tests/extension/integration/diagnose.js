// Integration tests of performance diagnostics in the editor, run inside code-server's extension host:
// index.js calls `run(test, ctx, helpers)`. Plain CommonJS.
// A script with planted problems (a DataLoader without workers, a `.item()` every step) is written into
// <workspace>/diagnose-e2e/ and opened: the daemon's diagnostics, quick fix, ignore action and the
// disabledRules setting are checked as the editor sees them; then "Deepdive: Diagnose Performance" runs the
// `diagnose` job on it, and "Apply and measure" the `diagnose-fix` job, answered Revert and Keep.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const fs = require('fs');
const path = require('path');

const DIAGNOSE = 'deepdive.diagnosePerformance';
const MEASURE = 'deepdive.applyAndMeasureFix';

// line 17: DD101 (num_workers=0 on a Dataset that does work per item; fixable); line 22: DD120
// (zero_grad(set_to_none=False); fixable, and cheap to time: no worker processes); line 27: DD110 (.item() every step)
const PLANTED = `"""A small training script with planted problems: a DataLoader without workers and .item() every step."""
import torch
from torch.utils.data import DataLoader, Dataset


class Noisy(Dataset):
    """Items made on access: the per-item work a loader's worker processes would take off the training loop."""

    def __len__(self):
        return 512

    def __getitem__(self, i):
        x = torch.randn(16)
        return x, x.sum(0, keepdim=True)


loader = DataLoader(Noisy(), batch_size=16, num_workers=0)
model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
total = 0.0
for x, y in loader:
    opt.zero_grad(set_to_none=False)
    out = model(x)
    loss = torch.nn.functional.mse_loss(out, y)
    loss.backward()
    opt.step()
    total += loss.item()
print(f"mean loss {total / len(loader):.4f}")
`;
const DD101_LINE = 17;
const DD120_LINE = 22;
const DD110_LINE = 27;

exports.run = async function runDiagnose(test, ctx, { poll }) {
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const dir = folder ? path.join(folder.uri.fsPath, 'diagnose-e2e') : undefined;
  const diagnostics = uri => vscode.languages.getDiagnostics(uri).filter(d => d.source === 'deepdive');
  const codeOf = d => (d.code && typeof d.code === 'object' ? String(d.code.value) : String(d.code));
  const show = uri => diagnostics(uri).map(d => `${codeOf(d)}@${d.range.start.line + 1}: ${d.message}`);
  /** A fresh copy of the planted script, opened in an editor; its DD110 diagnostic once published. */
  async function planted(name) {
    assert.ok(dir, 'the integration tests run with a workspace folder');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, name);
    fs.writeFileSync(file, PLANTED);
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
    await vscode.window.showTextDocument(doc, { preview: false });
    await poll(`deepdive diagnostics of ${name}`, async () => {
      const found = diagnostics(doc.uri);
      return { done: found.some(d => codeOf(d) === 'DD110'), value: show(doc.uri) };
    }, 20000, 200);
    return doc;
  }
  const byCode = (uri, code) => diagnostics(uri).find(d => codeOf(d) === code);
  async function actionsFor(doc, diagnostic) {
    const all = await vscode.commands.executeCommand('vscode.executeCodeActionProvider', doc.uri, diagnostic.range);
    return (all || []).filter(a => typeof a.title === 'string');
  }
  /** Closes every editor, reverting edited ones (closing them would ask to save). */
  async function closeAll() {
    const tabs = () => vscode.window.tabGroups.all.reduce((n, g) => n + g.tabs.length, 0);
    for (let i = 0; i < 30 && tabs() > 0; i++) {
      await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
    }
  }

  await test('diagnose: the commands and the four settings are there', async () => {
    needsApi();
    const all = await vscode.commands.getCommands(true);
    for (const c of [DIAGNOSE, MEASURE]) assert.ok(all.includes(c), `${c} is registered`);
    const c = vscode.workspace.getConfiguration('deepdive');
    assert.strictEqual(c.get('diagnostics.enabled'), true);
    assert.deepStrictEqual(c.get('diagnostics.disabledRules'), []);
    assert.strictEqual(c.get('diagnose.steps'), 10);
    assert.strictEqual(c.get('diagnose.pairs'), 6);
  });

  await test('diagnose: a planted .item() in the step loop is a DD110 warning from source deepdive, linked to its rule page', async () => {
    needsApi();
    const doc = await planted('planted_item.py');
    const d = byCode(doc.uri, 'DD110');
    assert.strictEqual(d.range.start.line + 1, DD110_LINE, `DD110 on line ${DD110_LINE}: ${show(doc.uri)}`);
    assert.strictEqual(d.severity, vscode.DiagnosticSeverity.Warning, 'no measured report yet: a warning');
    assert.ok(d.code && typeof d.code === 'object' && /rules\.md#dd110$/i.test(d.code.target.toString()),
      `the code links to the rule page: ${JSON.stringify(d.code)}`);
    await closeAll();
  }, 40000);

  await test('diagnose: the DD101 quick fix is offered (with Apply and measure) and applying it removes the diagnostic', async () => {
    needsApi();
    const doc = await planted('planted_fix.py');
    const d = await poll('the DD101 diagnostic', async () => {
      const x = byCode(doc.uri, 'DD101');
      return { done: !!x, value: x || show(doc.uri) };
    }, 10000, 200);
    assert.strictEqual(d.range.start.line + 1, DD101_LINE);
    const actions = await actionsFor(doc, d);
    const fix = actions.find(a => a.title.startsWith('Fix DD101:'));
    assert.ok(fix && fix.edit, `a "Fix DD101: …" quick fix with an edit among ${JSON.stringify(actions.map(a => a.title))}`);
    assert.ok(fix.kind && fix.kind.value === 'quickfix' && fix.isPreferred, 'a preferred quick fix');
    const measure = actions.find(a => a.command && a.command.command === MEASURE);
    if (vscode.workspace.isTrusted) {
      assert.ok(measure, `"Apply and measure DD101 fix…" in a trusted workspace: ${JSON.stringify(actions.map(a => a.title))}`);
      const [arg] = measure.command.arguments;
      assert.deepStrictEqual([arg.uri, arg.code, arg.line], [doc.uri.toString(), 'DD101', DD101_LINE], 'its argument names the finding');
      assert.ok(arg.edit && (arg.edit.changes || arg.edit.documentChanges), 'and carries the LSP edit');
    }
    assert.ok(await vscode.workspace.applyEdit(fix.edit), 'the editor takes the fix');
    await poll('DD101 to go after the fix', async () => ({ done: !byCode(doc.uri, 'DD101'), value: show(doc.uri) }), 10000, 200);
    assert.ok(/num_workers=[1-9]/.test(doc.lineAt(DD101_LINE - 1).text), `the fixed line: ${doc.lineAt(DD101_LINE - 1).text}`);
    assert.ok(byCode(doc.uri, 'DD110'), 'the other finding stays');
    await closeAll();
  }, 40000);

  await test('diagnose: "Ignore DD110 on this line" writes the comment and the diagnostic goes', async () => {
    needsApi();
    const doc = await planted('planted_ignore.py');
    const actions = await actionsFor(doc, byCode(doc.uri, 'DD110'));
    const ignore = actions.find(a => a.title === 'Ignore DD110 on this line');
    assert.ok(ignore && ignore.edit, `an ignore action among ${JSON.stringify(actions.map(a => a.title))}`);
    assert.ok(await vscode.workspace.applyEdit(ignore.edit));
    assert.match(doc.lineAt(DD110_LINE - 1).text, /#\s*deepdive:\s*ignore\[DD110\]/);
    await poll('DD110 to go after the ignore comment', async () => ({ done: !byCode(doc.uri, 'DD110'), value: show(doc.uri) }), 10000, 200);
    await closeAll();
  }, 40000);

  await test('diagnose: deepdive.diagnostics.disabledRules and enabled=false remove diagnostics; resetting brings them back', async () => {
    needsApi();
    const doc = await planted('planted_settings.py');
    const c = () => vscode.workspace.getConfiguration('deepdive.diagnostics');
    const G = vscode.ConfigurationTarget.Global;
    try {
      await c().update('disabledRules', ['DD110'], G);
      await poll('DD110 to go when disabled', async () => ({ done: !byCode(doc.uri, 'DD110'), value: show(doc.uri) }), 10000, 200);
      await c().update('disabledRules', undefined, G);
      await poll('DD110 back', async () => ({ done: !!byCode(doc.uri, 'DD110'), value: show(doc.uri) }), 10000, 200);
      await c().update('enabled', false, G);
      await poll('no deepdive diagnostics when disabled', async () => ({ done: diagnostics(doc.uri).length === 0, value: show(doc.uri) }), 10000, 200);
    } finally {
      await c().update('disabledRules', undefined, G);
      await c().update('enabled', undefined, G);
    }
    await poll('the diagnostics back', async () => ({ done: !!byCode(doc.uri, 'DD110'), value: show(doc.uri) }), 10000, 200);
    await closeAll();
  }, 40000);

  await test('diagnose: Diagnose Performance runs the diagnose job; its report and summary, and the diagnostics follow it', async () => {
    needsApi();
    const doc = await planted('planted_measure.py');
    const args = { uri: doc.uri.toString(), steps: 3, quiet: true, wait: true };
    if (!vscode.workspace.isTrusted) {
      const refused = await vscode.commands.executeCommand(DIAGNOSE, args);
      assert.strictEqual(refused && refused.state, 'refused');
      return;
    }
    const outcome = await vscode.commands.executeCommand(DIAGNOSE, args);
    const job = outcome && outcome.job;
    assert.ok(outcome && outcome.state === 'succeeded',
      `outcome: ${JSON.stringify(outcome && { state: outcome.state, error: outcome.error, reason: job && job.reason, argv: job && job.argv })}`);
    assert.strictEqual(job.kind, 'diagnose');
    assert.ok(outcome.report && fs.existsSync(outcome.report), `the report file exists: ${outcome.report}`);
    assert.strictEqual(path.dirname(outcome.report), path.join(folder.uri.fsPath, '.deepdive', 'diagnose'));
    const report = JSON.parse(fs.readFileSync(outcome.report, 'utf8'));
    assert.strictEqual(report.script, doc.uri.fsPath);
    assert.match(outcome.summary, /^planted_measure\.py: [\d.]+ ms\/step; .*\d+ findings? promoted/, outcome.summary);
    // the daemon re-reads the report when the job ends: a promoted finding's diagnostic carries its share,
    // the others are hints
    const promoted = report.findings.filter(f => f.promoted && f.file === doc.uri.fsPath);
    await poll('the diagnostics to follow the measured report', async () => {
      const ds = diagnostics(doc.uri);
      const ok = ds.length > 0 && ds.every(d => {
        const p = promoted.find(f => f.code === codeOf(d) && f.line === d.range.start.line + 1);
        return p ? / of step time \(measured on /.test(d.message) && d.severity === vscode.DiagnosticSeverity.Warning
          : d.severity === vscode.DiagnosticSeverity.Hint && /no cost measured/.test(d.message);
      });
      return { done: ok, value: { promoted: promoted.map(f => `${f.code}@${f.line}`), now: show(doc.uri) } };
    }, 15000, 300);
    await closeAll();
  }, 150000);

  /** The "Apply and measure DD120 fix…" action of a fresh planted script (null in an untrusted workspace). */
  async function measureAction(name) {
    const doc = await planted(name);
    const d = await poll('the DD120 diagnostic', async () => {
      const x = byCode(doc.uri, 'DD120');
      return { done: !!x, value: x || show(doc.uri) };
    }, 10000, 200);
    assert.strictEqual(d.range.start.line + 1, DD120_LINE);
    const action = (await actionsFor(doc, d)).find(a => a.command && a.command.command === MEASURE);
    if (!vscode.workspace.isTrusted) {
      assert.ok(!action, 'no Apply and measure in an untrusted workspace');
      return { doc, arg: null };
    }
    assert.ok(action, 'the Apply and measure action');
    return { doc, arg: action.command.arguments[0] };
  }
  const G = vscode.ConfigurationTarget.Global;
  const fewSteps = () => vscode.workspace.getConfiguration('deepdive.diagnose').update('steps', 1, G);
  const defaultSteps = () => vscode.workspace.getConfiguration('deepdive.diagnose').update('steps', undefined, G);

  await test('diagnose: Apply and measure times the script and a fixed copy; Revert leaves the file as it was', async () => {
    needsApi();
    const { doc, arg } = await measureAction('planted_revert.py');
    if (!arg) return;
    await fewSteps();
    try {
      let finished = false;
      const pending = Promise.resolve(vscode.commands.executeCommand(MEASURE, { ...arg, quiet: true, decide: 'revert' }))
        .finally(() => { finished = true; });
      // while it measures, the file is not touched: the job times a copy beside it
      const copy = await poll('the fixed copy beside the script (or the end of the measurement)', async () => {
        const found = fs.readdirSync(dir).filter(f => f.includes('dd-fix'));
        return { done: found.length > 0 || finished, value: found };
      }, 150000, 100);
      assert.strictEqual(fs.readFileSync(doc.uri.fsPath, 'utf8'), PLANTED, 'the script on disk is unchanged while measuring');
      assert.strictEqual(doc.getText(), PLANTED, 'and so is its buffer');
      const outcome = await pending;
      assert.ok(outcome && outcome.state === 'succeeded', `outcome: ${JSON.stringify(outcome)}`);
      assert.strictEqual(outcome.decision, 'revert');
      assert.deepStrictEqual([outcome.speedup.code, outcome.speedup.line, outcome.speedup.pairs], ['DD120', DD120_LINE, 6]);
      assert.ok(outcome.speedup.ci_low <= outcome.speedup.speedup && outcome.speedup.speedup <= outcome.speedup.ci_high, 'the median lies in its interval');
      assert.match(outcome.line, /^DD120 fix: (\d+\.\d+× (faster|slower) \(|no measurable change \(\d+\.\d+×, )96\.9 % CI [\d.]+–[\d.]+×, 6 pairs\)$/);
      assert.strictEqual(doc.getText(), PLANTED, 'Revert: the buffer is as it was');
      assert.ok(!doc.isDirty, 'and not modified');
      assert.strictEqual(fs.readFileSync(doc.uri.fsPath, 'utf8'), PLANTED, 'and the file on disk too');
      assert.deepStrictEqual(fs.readdirSync(dir).filter(f => f.includes('dd-fix')), [], `no fixed copy left beside it (seen while measuring: ${copy})`);
    } finally {
      await defaultSteps();
    }
    await closeAll();
  }, 200000);

  await test('diagnose: Apply and measure, Keep: the fix goes into the buffer, unsaved, and its diagnostic goes', async () => {
    needsApi();
    const { doc, arg } = await measureAction('planted_keep.py');
    if (!arg) return;
    await fewSteps();
    try {
      const outcome = await vscode.commands.executeCommand(MEASURE, { ...arg, quiet: true, decide: 'keep' });
      assert.ok(outcome && outcome.state === 'succeeded' && outcome.decision === 'keep' && outcome.applied === true, `outcome: ${JSON.stringify(outcome)}`);
      assert.strictEqual(doc.lineAt(DD120_LINE - 1).text, '    opt.zero_grad()', 'Keep: the fix is in the buffer');
      assert.ok(doc.isDirty, 'left unsaved');
      assert.strictEqual(fs.readFileSync(doc.uri.fsPath, 'utf8'), PLANTED, 'the file on disk is unchanged until the user saves');
      await poll('DD120 to go after Keep', async () => ({ done: !byCode(doc.uri, 'DD120'), value: show(doc.uri) }), 10000, 200);
    } finally {
      await defaultSteps();
    }
    await closeAll();
  }, 200000);
};
