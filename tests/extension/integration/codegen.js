// Integration tests of code generation (issues #5 and #20), run inside code-server's extension host after the
// other integration tests: index.js calls `run(test, ctx, helpers)` with its `test(name, fn, timeout)`.
// Plain CommonJS: no build step. The builtin backend generates offline; verification (which runs the
// program with --smoke) runs once, on the first generation; the others turn `deepdive.codegen.verify` off.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const fs = require('fs');

const PROMPT = 'a small MLP for MNIST';
const CODEGEN_COMMANDS = ['deepdive.generateCode', 'deepdive.generateIntoNewFile', 'deepdive.acceptGeneration', 'deepdive.rejectGeneration', 'deepdive.showGenerationChecks'];

async function openPython(content) {
  const doc = await vscode.workspace.openTextDocument({ language: 'python', content });
  const editor = await vscode.window.showTextDocument(doc, { preview: false });
  return { doc, editor };
}

async function lenses(doc) {
  return (await vscode.commands.executeCommand('vscode.executeCodeLensProvider', doc.uri)) || [];
}

function lensCommands(list) {
  return list.filter(l => l.command).map(l => l.command.command);
}

async function closeActive() {
  await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
}

async function closeAll() {
  for (let i = 0; i < 20 && vscode.window.tabGroups.activeTabGroup.activeTab; i++) {
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  }
}

function proposalDocument() {
  return vscode.workspace.textDocuments.find(d => d.uri.scheme === 'deepdive-proposal' && !d.isClosed);
}

function diffTab() {
  return vscode.window.tabGroups.all.flatMap(g => g.tabs)
    .find(t => t.input instanceof vscode.TabInputTextDiff && t.input.modified.scheme === 'deepdive-proposal');
}

async function setVerify(value) {
  await vscode.workspace.getConfiguration('deepdive').update('codegen.verify', value, vscode.ConfigurationTarget.Global);
}

exports.run = async function run(test, ctx, { poll, sleep }) {
  const needsApi = () => assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');

  await test('codegen: its commands are registered', async () => {
    const all = await vscode.commands.getCommands(true);
    const missing = CODEGEN_COMMANDS.filter(id => !all.includes(id));
    assert.deepStrictEqual(missing, [], `commands not registered: ${missing.join(', ')}`);
  });

  // Guard: a daemon without the handler answers MethodNotFound; then the editor side cannot be tested.
  await test('codegen: the daemon answers deepdive/generate', async () => {
    needsApi();
    await ctx.api.ready();
    try {
      const r = await ctx.api.request('deepdive/generate', { prompt: PROMPT, verify: false });
      assert.match(r.code, /def build_model/, 'the program defines build_model()');
      ctx.generate = true;
    } catch (e) {
      if (e && e.code === -32601) throw new Error('the daemon has no deepdive/generate handler (MethodNotFound): the codegen tests below are skipped');
      throw e;
    }
  }, 60000);

  await test('codegen: a "# deepdive:" comment (ASCII or full-width colon) gets a Generate CodeLens', async () => {
    const { doc } = await openPython('import torch\n# deepdive: a resnet18 for cifar-10 with mixed precision\n  # DeepDive：用于 MNIST 的卷积网络\n# deepdive:\n');
    const found = await poll('the Generate CodeLenses', async () => {
      const gen = (await lenses(doc)).filter(l => l.command && l.command.command === 'deepdive.generateFromComment');
      return { done: gen.length === 2, value: gen.map(l => ({ line: l.range.start.line, title: l.command.title })) };
    }, 15000);
    assert.deepStrictEqual(found.map(l => l.line), [1, 2], 'lenses on lines 2 and 3, none for the empty prompt');
    assert.match(found[0].title, /Generate/);
    await closeActive();
  });

  await test('codegen: with files.autoSave on, the file on disk is unchanged until Accept, and Reject writes nothing', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
    assert.ok(folder, 'the integration workspace has a folder');
    const file = vscode.Uri.joinPath(folder.uri, 'codegen_disk.py');
    const original = 'import os\n\nprint(os.getcwd())\n';
    fs.writeFileSync(file.fsPath, original);
    const mtime = fs.statSync(file.fsPath).mtimeMs;
    const onDisk = () => fs.readFileSync(file.fsPath, 'utf8');
    const files = vscode.workspace.getConfiguration('files');
    await files.update('autoSave', 'afterDelay', vscode.ConfigurationTarget.Global);
    await files.update('autoSaveDelay', 50, vscode.ConfigurationTarget.Global);
    await setVerify(false);
    try {
      const doc = await vscode.workspace.openTextDocument(file);
      await vscode.window.showTextDocument(doc, { preview: false });
      const ask = () => vscode.commands.executeCommand('deepdive.generateCode', { prompt: PROMPT, quiet: true, uri: file.toString(), line: 1 });

      let outcome = await ask();
      assert.strictEqual(outcome && outcome.state, 'review', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
      await sleep(800);   // far longer than the auto-save delay
      assert.strictEqual(onDisk(), original, 'the file on disk is unchanged while the program is under review');
      assert.strictEqual(fs.statSync(file.fsPath).mtimeMs, mtime, 'the file was not written');
      assert.strictEqual(doc.getText(), original, 'the editor buffer is unchanged: the program is only proposed');
      const proposal = proposalDocument();
      assert.ok(proposal, `a deepdive-proposal document is open; open: ${vscode.workspace.textDocuments.map(d => d.uri.toString())}`);
      assert.strictEqual(proposal.getText(), 'import os\n' + outcome.text + '\nprint(os.getcwd())\n', 'the proposal is the whole file with the program at line 2');
      assert.ok(diffTab(), 'the proposal is shown as a diff against the file');
      assert.match(outcome.text, /python codegen_disk\.py --smoke/, 'the run lines name the real file');
      assert.doesNotMatch(outcome.text, /mnist_mlp\.py/, 'not the suggested file name');
      const titles = (await lenses(doc)).filter(l => l.command).map(l => l.command.title).join(' | ');
      assert.match(titles, /--synthetic/, `a lens says how to run without the data set: ${titles}`);
      assert.match(titles, /data\/mnist/, `a lens says where the data set goes: ${titles}`);

      assert.strictEqual(await vscode.commands.executeCommand('deepdive.rejectGeneration', file.toString()), true, 'reject answers true');
      await sleep(800);
      assert.strictEqual(doc.getText(), original, 'reject leaves the buffer as it was');
      assert.ok(!doc.isDirty, 'and clean');
      assert.strictEqual(fs.statSync(file.fsPath).mtimeMs, mtime, 'reject wrote nothing');
      assert.ok(!diffTab(), 'reject closes the proposal');

      outcome = await ask();
      assert.strictEqual(outcome && outcome.state, 'review');
      await sleep(800);
      assert.strictEqual(onDisk(), original, 'the second proposal is not on disk either');
      assert.strictEqual(await vscode.commands.executeCommand('deepdive.acceptGeneration', file.toString()), true, 'accept answers true');
      const expected = 'import os\n' + outcome.text + '\nprint(os.getcwd())\n';
      assert.strictEqual(doc.getText(), expected, 'accept puts the program into the buffer at line 2');
      assert.ok(!diffTab(), 'accept closes the proposal');
      // the buffer is saved by the user's auto-save, as any edit is
      await poll('auto-save to write the accepted program', async () => ({ done: onDisk() === expected, value: onDisk().length }), 10000, 100);
    } finally {
      await files.update('autoSave', undefined, vscode.ConfigurationTarget.Global);
      await files.update('autoSaveDelay', undefined, vscode.ConfigurationTarget.Global);
      await setVerify(undefined);
      await closeAll();
      fs.rmSync(file.fsPath, { force: true });
    }
  }, 90000);

  await test('codegen: deepdive.generateCode proposes a verified program as a diff; accept inserts it into the buffer', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    const original = 'import os\n\n\nprint(os.getcwd())\n';
    const { doc } = await openPython(original);
    // at line 2 (the position given explicitly; the reject test below goes by the cursor)
    const outcome = await vscode.commands.executeCommand('deepdive.generateCode', { prompt: PROMPT, quiet: true, uri: doc.uri.toString(), line: 1 });
    assert.ok(outcome && outcome.state === 'review', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
    assert.strictEqual(doc.getText(), original, 'the document is not edited before Accept');
    assert.ok(outcome.text.includes('def build_model'), 'the outcome carries the proposed program');
    const proposed = 'import os\n' + outcome.text + '\n\nprint(os.getcwd())\n';
    const proposal = proposalDocument();
    assert.ok(proposal && diffTab(), 'the proposal is open in a diff editor');
    assert.strictEqual(proposal.getText(), proposed, 'the proposal is the document with the program at line 2');
    assert.match(outcome.text, /python mnist_mlp\.py --smoke/, 'an untitled document keeps the suggested file name (Save As proposes it)');
    if (vscode.workspace.isTrusted) {
      // "verified" only with every check passed and every property the prompt states checked and met
      assert.match(outcome.summary, /^verified: (\d+)\/\1 checks passed, (?:(\d+)\/\2 stated propert(?:y|ies) met|no property stated) in [\d.]+ s/, `summary: ${outcome.summary}`);
      assert.strictEqual(outcome.verified, true);
    } else {
      assert.match(outcome.summary, /untrusted/, `summary in an untrusted workspace: ${outcome.summary}`);
    }
    const review = lensCommands(await lenses(doc));
    assert.ok(review.includes('deepdive.acceptGeneration') && review.includes('deepdive.rejectGeneration'), `Accept/Reject lenses in the document, got ${review}`);
    const inProposal = lensCommands(await lenses(proposal));
    assert.ok(inProposal.includes('deepdive.acceptGeneration'), `Accept lens in the proposal, got ${inProposal}`);
    assert.strictEqual(await vscode.commands.executeCommand('deepdive.acceptGeneration', doc.uri.toString()), true, 'accept answers true');
    assert.strictEqual(doc.getText(), proposed, 'accept puts the proposal into the document');
    assert.ok(doc.isDirty, 'and leaves it unsaved');
    assert.ok(!diffTab(), 'accept closes the diff');
    const after = lensCommands(await lenses(doc));
    assert.ok(!after.includes('deepdive.acceptGeneration'), `no Accept lens after accepting, got ${after}`);
    await closeActive();
  }, 90000);

  await test('codegen: reject closes the proposal and leaves the document untouched', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    await setVerify(false);
    try {
      const original = 'x = 1\ny = 2';
      const { doc, editor } = await openPython(original);
      editor.selection = new vscode.Selection(0, 5, 0, 5);   // end of a line with code: the program goes below it
      await poll('the cursor at the end of line 1', async () => {
        const e = vscode.window.activeTextEditor;
        return { done: !!e && e.document === doc && e.selection.active.line === 0 && e.selection.active.character === 5, value: e && e.selection.active };
      }, 5000, 100);
      const outcome = await vscode.commands.executeCommand('deepdive.generateCode', { prompt: PROMPT, quiet: true });
      assert.strictEqual(outcome && outcome.state, 'review', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
      assert.match(outcome.summary, /verification off|skipped/, `summary with verify off: ${outcome.summary}`);
      assert.doesNotMatch(outcome.summary, /verified/, 'a program that was not run is never called verified');
      const text = proposalDocument().getText();
      assert.match(text, /^x = 1\n[\s\S]*def build_model[\s\S]*\ny = 2$/, `proposed between the lines; got ${JSON.stringify(text.slice(0, 80))}…${JSON.stringify(text.slice(-80))}`);
      assert.strictEqual(await vscode.commands.executeCommand('deepdive.rejectGeneration'), true, 'reject answers true');
      assert.strictEqual(doc.getText(), original, 'the document is as it was');
      assert.ok(!diffTab(), 'reject closes the diff');
      assert.strictEqual(await vscode.commands.executeCommand('deepdive.acceptGeneration', doc.uri.toString()), false, 'nothing is left to accept');
      await vscode.window.showTextDocument(doc);
      await closeActive();
    } finally {
      await setVerify(undefined);
    }
  }, 60000);

  await test('codegen: in a CRLF document the proposal and the accepted program have CRLF line ends', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    await setVerify(false);
    try {
      const original = 'a = 1\r\n\r\nb = 2\r\n';
      const { doc } = await openPython(original);
      assert.strictEqual(doc.eol, vscode.EndOfLine.CRLF, 'the document is CRLF');
      const outcome = await vscode.commands.executeCommand('deepdive.generateCode', { prompt: PROMPT, quiet: true, uri: doc.uri.toString(), line: 1 });
      assert.strictEqual(outcome && outcome.state, 'review', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
      assert.strictEqual(proposalDocument().getText(), 'a = 1\r\n' + outcome.text + '\r\nb = 2\r\n', 'the program sits at line 2 of the proposal');
      await vscode.commands.executeCommand('deepdive.acceptGeneration', doc.uri.toString());
      const text = doc.getText();
      assert.match(text, /def build_model/);
      assert.ok(!/[^\r]\n/.test(text), 'no bare LF line ends');
      assert.strictEqual(text, 'a = 1\r\n' + outcome.text + '\r\nb = 2\r\n', 'the program sits at line 2');
      await closeActive();
    } finally {
      await setVerify(undefined);
    }
  }, 60000);

  await test('codegen: the comment lens proposes the program below the comment; once accepted, the Generate lens goes', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    await setVerify(false);
    try {
      const original = 'import torch\n# deepdive: a small CNN for CIFAR-10\nx = 1\n';
      const { doc } = await openPython(original);
      const generateLenses = async () => (await lenses(doc)).filter(l => l.command && l.command.command === 'deepdive.generateFromComment');
      assert.strictEqual((await generateLenses()).length, 1, 'the comment has a Generate lens');
      const outcome = await vscode.commands.executeCommand('deepdive.generateFromComment', doc.uri, 1);
      assert.strictEqual(outcome && outcome.state, 'review', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
      const text = proposalDocument().getText();
      assert.ok(text.startsWith('import torch\n# deepdive: a small CNN for CIFAR-10\n'), 'the comment stays');
      assert.match(text, /def build_model[\s\S]*\nx = 1\n$/, 'the program is between the comment and the next line');
      assert.strictEqual(doc.getText(), original, 'the document is not edited before Accept');
      assert.strictEqual(await vscode.commands.executeCommand('deepdive.acceptGeneration', doc.uri), true);
      assert.strictEqual(doc.getText(), text, 'accept inserts the proposal');
      await poll('the Generate lens of the answered comment to go', async () => {
        const left = await generateLenses();
        return { done: left.length === 0, value: left.map(l => l.range.start.line) };
      }, 10000, 200);
      await closeActive();
    } finally {
      await setVerify(undefined);
    }
  }, 60000);

  await test('codegen: rejecting while it streams cancels the request and closes the partial proposal', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    if (!vscode.workspace.isTrusted) return;   // needs verification to keep the request running
    const original = '# start\n';
    const { doc, editor } = await openPython(original);
    editor.selection = new vscode.Selection(1, 0, 1, 0);
    const running = vscode.commands.executeCommand('deepdive.generateCode', { prompt: PROMPT, quiet: true });
    // the program streams into the proposal, then the request verifies it (a --smoke run): cancel then
    await poll('the streamed program in the proposal', async () => {
      const p = proposalDocument();
      return { done: !!p && p.getText().includes('def build_model'), value: p ? p.getText().length : null };
    }, 30000, 100);
    assert.strictEqual(doc.getText(), original, 'the document is not edited while the program streams');
    assert.strictEqual(await vscode.commands.executeCommand('deepdive.rejectGeneration', doc.uri.toString()), true);
    const outcome = await running;
    assert.strictEqual(outcome && outcome.state, 'cancelled', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
    assert.strictEqual(doc.getText(), original, 'the document is as it was');
    assert.ok(!diffTab(), 'the proposal is closed');
    await vscode.window.showTextDocument(doc);
    await closeActive();
  }, 60000);

  await test('codegen: deepdive.generateIntoNewFile puts the program into a new, unsaved Python document', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    await setVerify(false);
    try {
      const outcome = await vscode.commands.executeCommand('deepdive.generateIntoNewFile', { prompt: PROMPT, quiet: true });
      assert.strictEqual(outcome && outcome.state, 'accepted', `outcome: ${JSON.stringify(outcome && { ...outcome, text: undefined })}`);
      const editor = vscode.window.activeTextEditor;
      assert.ok(editor && editor.document.isUntitled, 'an untitled document is active');
      assert.strictEqual(editor.document.languageId, 'python');
      assert.match(editor.document.getText(), /def build_model/);
      assert.strictEqual(editor.document.uri.toString(), outcome.uri);
      const proposals = vscode.window.tabGroups.all.flatMap(g => g.tabs).filter(t => t.input instanceof vscode.TabInputText && t.input.uri.scheme === 'deepdive-proposal');
      assert.strictEqual(proposals.length, 0, 'the streaming proposal is closed');
      await closeActive();
    } finally {
      await setVerify(undefined);
    }
  }, 60000);

  await test('codegen: the checks page lists the checks of the last generation', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    await vscode.commands.executeCommand('deepdive.showGenerationChecks');
    const doc = await poll('a deepdive-codegen document', async () => {
      const d = vscode.workspace.textDocuments.find(x => x.uri.scheme === 'deepdive-codegen');
      return { done: !!d, value: d || vscode.workspace.textDocuments.map(x => x.uri.toString()) };
    }, 10000);
    assert.match(doc.getText(), /## Checks/);
    assert.match(doc.getText(), /## Stated properties/);
    assert.match(doc.getText(), /a small MLP for MNIST/);
  });

  await test('codegen: a request the builtin cannot build as asked inserts nothing and says what is missing', async () => {
    assert.ok(ctx.generate, 'deepdive/generate is not available (see above)');
    const original = 'import os\n';
    const { doc } = await openPython(original);
    const outcome = await vscode.commands.executeCommand('deepdive.generateCode', {
      prompt: 'a U-Net for semantic segmentation of medical images, without dropout', quiet: true, uri: doc.uri.toString(), line: 1,
    });
    assert.strictEqual(outcome && outcome.state, 'no-program', `outcome: ${JSON.stringify(outcome)}`);
    assert.match(outcome.summary, /^no program: the builtin generator cannot build this as asked: .*segmentation/, `summary: ${outcome.summary}`);
    assert.match(outcome.summary, /deepdive model pull/, 'it says what a local model would add');
    assert.doesNotMatch(outcome.summary, /verified/);
    assert.strictEqual(doc.getText(), original, 'nothing was inserted');
    assert.ok(!diffTab(), 'no proposal is left open');
    const left = lensCommands(await lenses(doc));
    assert.ok(!left.includes('deepdive.acceptGeneration'), `no Accept lens for no program, got ${left}`);
    await vscode.commands.executeCommand('deepdive.showGenerationChecks');
    const page = await poll('the checks page of the request', async () => {
      const d = vscode.workspace.textDocuments.find(x => x.uri.scheme === 'deepdive-codegen' && /semantic segmentation/.test(x.getText()));
      return { done: !!d, value: d || null };
    }, 10000);
    assert.match(page.getText(), /## Stated properties/);
    assert.match(page.getText(), /➖ not checked \| task semantic-segmentation/);
    assert.match(page.getText(), /## What the builtin generator cannot build as asked/);
    await closeActive();   // the checks page
    await vscode.window.showTextDocument(doc);
    await closeActive();
  }, 60000);
};
