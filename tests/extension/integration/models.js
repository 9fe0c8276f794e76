// Integration test of "Deepdive: Choose Code Model…" in code-server's extension host: index.js calls
// `run(test, ctx, helpers)` after the compress tests. Plain CommonJS.
// A tiny GGUF file (a header, no weights) is added to the registry with the CLI (the daemon's registry: the
// extension host's XDG_CONFIG_HOME), then the command's quick pick is driven like a user does (next item,
// accept): the daemon's default and the deepdive.codegen.backend setting must follow; then back to the
// builtin generator. The registry is left as it was found.
'use strict';
const vscode = require('vscode');
const assert = require('assert');
const cp = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const COMMAND = 'deepdive.chooseCodeModel';
const NAME = 'e2e-tiny';

function cli(args) {
  const python = vscode.workspace.getConfiguration('deepdive').get('pythonPath') || process.env.E2E_PYTHON;
  assert.ok(python, 'deepdive.pythonPath is set (the harness sets it in the user settings) or E2E_PYTHON');
  return new Promise((resolve, reject) => {
    cp.execFile(python, ['-m', 'deepdive', ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`deepdive ${args.join(' ')} failed: ${(stdout + stderr).slice(-1000)}`));
      else resolve(stdout);
    });
  });
}

/** A GGUF version 3 header with one key (general.name) and no tensors: enough to be registered. */
function tinyGguf(file) {
  const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
  const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
  const str = (s) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
  fs.writeFileSync(file, Buffer.concat([Buffer.from('GGUF'), u32(3), u64(0), u64(1), str('general.name'), u32(8), str('E2E Tiny')]));
}

/** The quick pick opens once the daemon has listed the models: move to item `index` and accept it. */
async function pick(index, sleep) {
  await sleep(3000);
  for (let i = 0; i < index; i++) {
    await vscode.commands.executeCommand('workbench.action.quickOpenSelectNext');
  }
  await vscode.commands.executeCommand('workbench.action.acceptSelectedQuickOpenItem');
}

exports.run = async function runModels(test, ctx, { sleep }) {
  await test('models: the picker lists the registry through the daemon and sets the default model', async () => {
    assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'deepdive-models-')), `${NAME}.gguf`);
    tinyGguf(file);
    await cli(['model', 'remove', NAME]).catch(() => undefined);  // a run that died before its cleanup
    await cli(['model', 'add', file, '--name', NAME, '--no-bench']);
    const config = vscode.workspace.getConfiguration('deepdive');
    const userValue = config.inspect('codegen.backend').globalValue;
    try {
      const listed = await ctx.api.request('deepdive/models/list', { discover: false });
      const row = listed.models.find((m) => m.name === NAME);
      assert.ok(row && row.registered && row.kind === 'gguf' && row.path === file, `listed: ${JSON.stringify(listed)}`);
      // the items: the builtin generator, then the registered models in the registry's order
      const index = 1 + listed.models.filter((m) => m.registered).findIndex((m) => m.name === NAME);
      const chosen = vscode.commands.executeCommand(COMMAND);
      await pick(index, sleep);
      const outcome = await chosen;
      assert.strictEqual(outcome && outcome.state, 'chosen', `outcome: ${JSON.stringify(outcome)}`);
      assert.strictEqual(outcome.default, NAME);
      assert.strictEqual((await ctx.api.request('deepdive/models/list', { discover: false })).default, NAME);
      assert.strictEqual(vscode.workspace.getConfiguration('deepdive').get('codegen.backend'), 'auto');
      const again = vscode.commands.executeCommand(COMMAND);
      await pick(0, sleep);  // the first item: the builtin generator
      const back = await again;
      assert.strictEqual(back && back.default, null, `outcome: ${JSON.stringify(back)}`);
    } finally {
      await cli(['model', 'default', 'builtin']).catch(() => undefined);
      await cli(['model', 'remove', NAME]).catch(() => undefined);
      await config.update('codegen.backend', userValue, vscode.ConfigurationTarget.Global);
    }
  }, 90000);
};
