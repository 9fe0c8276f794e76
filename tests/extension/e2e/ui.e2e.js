// End-to-end test of the packaged extension (.vsix installed into code-server) driven like a user
// through headless Chromium: the command palette, the editor, and the daemon's process in code-server's
// process tree. Started by run.sh, which passes everything through E2E_* environment variables.
'use strict';
const c = require('./lib/common');

const port = c.env('E2E_PORT');
const csPid = Number(c.env('E2E_CS_PID'));
const workspace = c.env('E2E_WORKSPACE');
const torchVersion = c.env('E2E_TORCH_VERSION');
const python = c.env('E2E_PYTHON');
const fs = require('fs');

const REPORT_CMD = 'Deepdive: Show Environment Report';
const RESTART_CMD = 'Deepdive: Restart Server';
const DASHBOARD_CMD = 'Deepdive: Open Dashboard';
const DASHBOARD_TITLE = 'Deepdive Dashboard';
// VS Code's own command for a contributed view: "<container>: Focus on <view> View"
const SIDEBAR_CMD = 'Deepdive: Focus on Dashboard View';

async function main() {
  const T = c.clock();
  const rec = c.recorder('ui');
  const b = await c.launch();
  const page = b.page;
  const state = {};
  let n = 0;
  let blocked = null;   // the name of a failed step later steps depend on

  async function test(name, fn, { prerequisite = false } = {}) {
    n += 1;
    const t0 = Date.now();
    if (blocked) {
      rec.record(name, false, 0, new Error(`not run: it needs "${blocked}", which failed`));
      return;
    }
    try {
      await fn();
      rec.record(name, true, Date.now() - t0);
    } catch (e) {
      let toasts = [];
      try { toasts = await c.toasts(page); } catch { /* page gone */ }
      if (toasts.length) e.message += `\nnotifications on screen: ${JSON.stringify(toasts)}`;
      rec.record(name, false, Date.now() - t0, e);
      await c.screenshot(page, `ui-fail-${String(n).padStart(2, '0')}-${name.replace(/[^a-z0-9]+/gi, '-').toLowerCase().slice(0, 60)}`);
      if (prerequisite) blocked = name;
    }
  }

  const daemonPids = () => c.daemons(csPid).map(p => p.pid);

  // The extension's status bar entry reads exactly "Deepdive" once its daemon answers (else
  // "Deepdive: starting" / "restarting" / "error"); requests made before that fail by design.
  const statusItem = page.locator('.part.statusbar .statusbar-item', { hasText: /Deepdive/ }).first();
  async function statusReady(timeoutMs) {
    let text = '';
    await c.waitFor('the status bar to show "Deepdive" (daemon ready)', async () => {
      text = (await statusItem.innerText({ timeout: 1000 })).trim();
      return text === 'Deepdive' || text.startsWith('Deepdive · ');
    }, timeoutMs, 200).catch(e => { e.message += ` (status bar: "${text}")`; throw e; });
  }

  async function reportShowsTorch() {
    await c.runCommand(page, REPORT_CMD);
    let text = '';
    // the report opens rendered: the Markdown preview, a webview whose page is in a nested frame
    await c.waitFor(`the rendered report to show torch ${torchVersion}`, async () => {
      const texts = await Promise.all(page.frames().map(f => f.evaluate(() => (document.body ? document.body.innerText : '')).catch(() => '')));
      text = texts.find(t => t.includes('Deepdive environment report')) || '';
      // the torch row of the report: a line naming torch and its version
      return text.split('\n').some(l => /\btorch\b/i.test(l) && l.includes(torchVersion));
    }, 30000, 500).catch(e => {
      e.message += `\nrendered report text (first 1500 chars):\n${text.slice(0, 1500)}`;
      throw e;
    });
    const tab = await page.locator('.editor-group-container.active .tab.active').first().innerText().catch(() => '?');
    console.log(`     ${T()} report tab "${tab.split('\n')[0]}" contains torch ${torchVersion}`);
  }

  await test('workbench opens the workspace folder', async () => {
    await c.openWorkbench(page, port, workspace);
    const folderName = require('path').basename(workspace);
    await c.waitFor(`the window title to name ${folderName}`, async () => (await page.title()).includes(folderName), 30000);
    // the explorer shows the workspace's train.py
    await page.locator('.explorer-folders-view .monaco-list-row', { hasText: 'train.py' }).first().waitFor({ timeout: 30000 });
  }, { prerequisite: true });

  await test('extension starts its daemon (deepdive.pythonPath) in code-server\'s process tree', async () => {
    const ps = await c.waitFor('a `python -m deepdive serve` process under code-server', () => {
      const d = c.daemons(csPid);
      return d.length ? d : null;
    }, 60000, 500);
    state.pid = ps[0].pid;
    const exe = ps[0].args.split(/\s+/)[0];
    const same = exe === python || (fs.existsSync(exe) && fs.realpathSync(exe) === fs.realpathSync(python));
    if (!same) throw new Error(`daemon runs "${ps[0].args}", not the configured deepdive.pythonPath ${python}`);
    if (ps.length !== 1) throw new Error(`expected one daemon, found ${ps.length}: ${JSON.stringify(ps)}`);
    await statusReady(30000);
    await c.sleep(1000);   // and it stays up (a daemon that exits at once is restarted over and over)
    if (!c.alive(state.pid)) throw new Error(`daemon ${state.pid} (${ps[0].args}) exited right after starting`);
    console.log(`     ${T()} daemon pid ${state.pid}: ${ps[0].args}`);
  }, { prerequisite: true });

  await test(`"${REPORT_CMD}" from the command palette shows torch ${torchVersion}`, async () => {
    await reportShowsTorch();
    await c.screenshot(page, 'ui-report');
  });

  await test('daemon killed with SIGKILL is replaced by a new, ready one within 10 s', async () => {
    const old = state.pid;
    if (!old || !c.alive(old)) throw new Error(`no live daemon to kill (pid ${old})`);
    process.kill(old, 'SIGKILL');
    const t0 = Date.now();
    const pid = await c.waitFor('a new daemon pid', () => {
      const fresh = daemonPids().filter(p => p !== old && c.alive(p));
      return fresh.length ? fresh[0] : null;
    }, 10000, 200);
    const tPid = Date.now() - t0;
    await statusReady(Math.max(1000, 10000 - (Date.now() - t0)));
    console.log(`     ${T()} killed ${old}; new daemon pid ${pid} after ${(tPid / 1000).toFixed(1)}s, ready after ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    if (c.alive(old)) throw new Error(`the killed daemon ${old} is still alive`);
    state.pid = pid;
  }, { prerequisite: true });

  await test(`"${REPORT_CMD}" works again with the new daemon`, async () => {
    await c.runCommand(page, 'View: Close All Editors');
    await reportShowsTorch();
    if (!c.alive(state.pid)) throw new Error(`the new daemon ${state.pid} died`);
    const pids = daemonPids();
    if (pids.length !== 1 || pids[0] !== state.pid) throw new Error(`expected exactly daemon ${state.pid}, found ${JSON.stringify(pids)}`);
  });

  await test(`"${RESTART_CMD}" from the command palette replaces the daemon`, async () => {
    const old = state.pid;
    await c.runCommand(page, RESTART_CMD);
    const pid = await c.waitFor('a daemon with a new pid', () => daemonPids().find(p => p !== old && c.alive(p)), 15000, 200);
    await c.waitFor(`the previous daemon ${old} to exit`, () => !c.alive(old), 10000, 200);
    await c.waitFor('exactly one daemon', () => daemonPids().length === 1, 10000, 200);
    await statusReady(15000);
    console.log(`     ${T()} restarted: ${old} -> ${pid}`);
    state.pid = pid;
  });

  await test(`"${DASHBOARD_CMD}" opens a live dashboard panel (host CPU, devices)`, async () => {
    await c.runCommand(page, DASHBOARD_CMD);
    await page.locator('.editor-group-container.active .tab.active', { hasText: DASHBOARD_TITLE })
      .first().waitFor({ timeout: 15000 });
    // VS Code webviews are nested iframes; the dashboard's document is the frame with its #conn badge.
    let seen = {};
    const t0 = Date.now();
    await c.waitFor('the dashboard badge to read "live" and the Host CPU value to be filled', async () => {
      for (const f of page.frames()) {
        const s = await f.evaluate(() => {
          const conn = document.getElementById('conn');
          if (!conn) return null;
          const cpuRow = [...document.querySelectorAll('#host-body .metric')]
            .find(r => (r.querySelector('.label')?.textContent || '').trim() === 'CPU');
          const body = document.getElementById('devices-body');
          return {
            conn: conn.textContent.trim(),
            cpu: cpuRow ? (cpuRow.querySelector('.value')?.textContent || '').trim() : '',
            gpuCards: body ? body.querySelectorAll('.card.gpu').length : 0,
            devices: body ? body.innerText.trim().slice(0, 300) : '',
          };
        }).catch(() => null);
        if (s) {
          seen = s;
          return s.conn === 'live' && /\d/.test(s.cpu);   // fmtPct gives "—" until a sample arrives
        }
      }
      seen = { frames: page.frames().map(f => f.url().slice(0, 120)) };
      return false;
    }, 30000, 500).catch(e => { e.message += `\nlast seen: ${JSON.stringify(seen)}`; throw e; });
    if (!(seen.gpuCards > 0 || /^No GPUs: \S/.test(seen.devices))) {
      throw new Error(`Devices shows neither a GPU card nor a "No GPUs: <reason>": ${JSON.stringify(seen)}`);
    }
    await c.screenshot(page, 'ui-dashboard-panel');
    console.log(`     ${T()} dashboard live after ${((Date.now() - t0) / 1000).toFixed(1)}s; CPU "${seen.cpu}"; devices: ${seen.gpuCards ? `${seen.gpuCards} GPU card(s)` : `"${seen.devices}"`}`);
  });

  await test('the sidebar dashboard shows a training run live (charts fill, status bar shows its throughput)', async () => {
    await c.runCommand(page, 'View: Close All Editors');
    await c.runCommand(page, SIDEBAR_CMD);
    // the sidebar's webview: the frame with the dashboard's #conn badge (the panel is closed)
    let frame = null;
    let seen = {};
    await c.waitFor('the sidebar dashboard to go live', async () => {
      for (const f of page.frames()) {
        const s = await f.evaluate(() => {
          const conn = document.getElementById('conn');
          return conn ? { conn: conn.textContent.trim(), streamUrl: (window.DEEPDIVE_CONFIG || {}).streamUrl || null } : null;
        }).catch(() => null);
        if (s) {
          seen = s;
          if (s.conn === 'live' && s.streamUrl) { frame = f; return true; }
        }
      }
      return false;
    }, 30000, 500).catch(e => { e.message += `\nlast seen: ${JSON.stringify(seen)}`; throw e; });
    // a real training run streaming to the daemon's hub: the ingest URL is the stream URL's sibling
    const ingest = seen.streamUrl.replace('/stream?', '/ingest?');
    const home = fs.mkdtempSync(require('path').join(require('os').tmpdir(), 'ui-train-'));
    const train = require('child_process').spawn(python, ['-m', 'deepdive', 'train', require('path').join(c.env('E2E_REPO'), 'server/examples/digits.py'),
      '--nproc', '1', '--checkpoint-dir', require('path').join(workspace, 'ckpt'), '--', '--epochs', '40', '--compression', 'none'],
    { env: { ...process.env, DEEPDIVE_HUB: ingest, DEEPDIVE_HOME: home }, detached: true, stdio: 'ignore' });
    try {
      let points = 0;
      await c.waitFor('the sidebar\'s loss chart to receive points', async () => {
        points = await frame.evaluate(() => window.__deepdiveDashboard.pointCount('loss')).catch(() => 0);
        return points >= 10;
      }, 90000, 500).catch(e => { e.message += ` (points: ${points})`; throw e; });
      const title = await frame.evaluate(() => document.getElementById('run-title').textContent);
      if (!/^Current run: \S/.test(title)) throw new Error(`run title: ${JSON.stringify(title)}`);
      let bar = '';
      await c.waitFor('the status bar to show the run\'s throughput', async () => {
        bar = (await page.locator('.part.statusbar .statusbar-item', { hasText: /Deepdive/ }).first().innerText({ timeout: 1000 })).trim();
        return /samples\/s/.test(bar);
      }, 20000, 500).catch(e => { e.message += ` (status bar: "${bar}")`; throw e; });
      await c.screenshot(page, 'ui-dashboard-sidebar');
      const u = new URL(seen.streamUrl);
      console.log(`     ${T()} sidebar: ${points} loss points via ${u.origin}${u.pathname}; status bar "${bar.replace(/\s+/g, ' ')}"`);
      // the same run, started outside the daemon (as in a terminal with DEEPDIVE_HUB), is in the Jobs view
      await c.runCommand(page, 'Deepdive: Focus on Jobs View');
      await page.locator('.monaco-list-row', { hasText: 'train digits.py (terminal)' }).first().waitFor({ timeout: 30000 });
      await c.screenshot(page, 'ui-jobs-terminal-run');
      // and its checkpoints (the run saves into the workspace's ckpt/ every epoch) in the Checkpoints view
      await c.runCommand(page, 'Deepdive: Focus on Checkpoints View');
      await c.runCommand(page, 'Deepdive: Refresh Checkpoints');
      await page.locator('.monaco-list-row', { hasText: 'ckpt' }).first().waitFor({ timeout: 30000 });
      await c.screenshot(page, 'ui-checkpoints-view');
    } finally {
      try { process.kill(-train.pid, 'SIGKILL'); } catch { /* gone */ }
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  // Issue #20: generated code is a proposal (a diff) until Accept; the file on disk is not touched before.
  await test('"Deepdive: Generate Code…" shows the program as a diff; the file on disk is unchanged until Accept', async () => {
    const file = require('path').join(workspace, 'generated_ui.py');
    const original = '"""A file to generate into."""\nimport os\n';
    fs.writeFileSync(file, original);
    const mtime = fs.statSync(file).mtimeMs;
    const active = name => page.locator('.editor-group-container.active .tab.active', { hasText: name }).first();
    try {
      await c.runCommand(page, 'View: Close All Editors');
      await page.keyboard.press('Control+P');
      const input = page.locator('.quick-input-widget input');
      await input.waitFor({ state: 'visible', timeout: 15000 });
      await input.fill('generated_ui.py');
      await page.locator('.quick-input-widget .monaco-list-row', { hasText: 'generated_ui.py' }).first().click();
      await active('generated_ui.py').waitFor({ timeout: 15000 });
      await page.locator('.editor-group-container.active .monaco-editor .view-lines').first().click();
      await page.keyboard.press('Control+End');
      // from the command palette, like c.runCommand, whose wait for the palette to close does not fit:
      // the command's own prompt box opens in its place
      await page.keyboard.press('F1');
      await input.waitFor({ state: 'visible', timeout: 15000 });
      await input.fill('>Deepdive: Generate Code');
      await page.locator('.quick-input-widget .monaco-list-row', { hasText: 'Deepdive: Generate Code…' }).first().click();
      await c.waitFor('the prompt box', async () => ((await input.getAttribute('placeholder')) || '').startsWith('Describe the program'), 15000, 200);
      await input.fill('a small MLP for MNIST');
      await page.keyboard.press('Enter');
      await active('Deepdive proposal').waitFor({ timeout: 30000 });
      // the Accept button of the diff's title bar appears once the program is complete (and verified)
      const accept = page.locator('.editor-group-container.active [aria-label^="Accept Generated Code"]').first();
      await accept.waitFor({ timeout: 120000 }).catch(async e => {
        const labels = await page.locator('.editor-group-container.active .action-label').evaluateAll(els => els.map(el => el.getAttribute('aria-label'))).catch(() => []);
        const tabs = await page.locator('.tab').allInnerTexts().catch(() => []);
        e.message += `\ntitle actions: ${JSON.stringify(labels)}; tabs: ${JSON.stringify(tabs)}; notifications: ${JSON.stringify(await c.toasts(page).catch(() => []))}`;
        await c.screenshot(page, 'ui-codegen-no-accept');
        throw e;
      });
      if (fs.readFileSync(file, 'utf8') !== original || fs.statSync(file).mtimeMs !== mtime) throw new Error('generated_ui.py on disk changed before Accept');
      await c.screenshot(page, 'ui-codegen-proposal');
      await accept.click();
      await active('generated_ui.py').waitFor({ timeout: 15000 });
      const text = await c.activeEditorText(page);
      if (!text.includes('def build_model')) throw new Error(`the accepted program is not in the editor:\n${text.slice(0, 800)}`);
      if (!text.includes('python generated_ui.py --smoke')) throw new Error('the docstring\'s run lines do not name generated_ui.py');
      await c.screenshot(page, 'ui-codegen-accepted');
      console.log(`     ${T()} codegen: proposal diff, file unchanged on disk until Accept, then the program in the editor`);
    } finally {
      await c.runCommand(page, 'View: Revert and Close Editor').catch(() => undefined);
      fs.rmSync(file, { force: true });
    }
  });

  // Issue #22: a planted problem is squiggled, its quick fix is in the light bulb menu, and "Deepdive: Diagnose
  // Performance" ends on the dashboard's Diagnosis section with the measured report.
  await test('diagnostics: the squiggle, the quick fix menu, and the Diagnosis page after "Deepdive: Diagnose Performance"', async () => {
    const pathMod = require('path');
    const file = pathMod.join(workspace, 'diagnose_ui.py');
    fs.writeFileSync(file, [
      '"""A small training script with planted problems: a DataLoader without workers and .item() every step."""',
      'import torch',
      'from torch.utils.data import DataLoader, Dataset',
      '',
      '',
      'class Noisy(Dataset):',
      '    """Items made on access: the per-item work a loader\'s worker processes would take off the training loop."""',
      '',
      '    def __len__(self):',
      '        return 512',
      '',
      '    def __getitem__(self, i):',
      '        x = torch.randn(16)',
      '        return x, x.sum(0, keepdim=True)',
      '',
      '',
      'loader = DataLoader(Noisy(), batch_size=16, num_workers=0)',
      'model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))',
      'opt = torch.optim.SGD(model.parameters(), lr=0.01)',
      'total = 0.0',
      'for x, y in loader:',
      '    opt.zero_grad()',
      '    out = model(x)',
      '    loss = torch.nn.functional.mse_loss(out, y)',
      '    loss.backward()',
      '    opt.step()',
      '    total += loss.item()',
      'print(f"mean loss {total / len(loader):.4f}")',
      '',
    ].join('\n'));
    const editor = page.locator('.editor-group-container.active .monaco-editor').first();
    try {
      await c.runCommand(page, 'View: Close All Editors');
      await page.keyboard.press('Control+P');
      const input = page.locator('.quick-input-widget input');
      await input.waitFor({ state: 'visible', timeout: 15000 });
      await input.fill(file);  // the absolute path: a file just written may not be in the search index yet
      await page.locator('.quick-input-widget .monaco-list-row', { hasText: 'diagnose_ui.py' }).first().click();
      await page.locator('.editor-group-container.active .tab.active', { hasText: 'diagnose_ui.py' }).first().waitFor({ timeout: 15000 });
      // the daemon's warnings: Monaco draws them as .squiggly-warning decorations
      await editor.locator('.squiggly-warning').first().waitFor({ state: 'attached', timeout: 30000 });
      const squiggles = await editor.locator('.squiggly-warning').count();
      await c.screenshot(page, 'ui-diagnose-squiggle');
      // the light bulb menu on the DataLoader line (Go to Line 17, then Quick Fix…)
      await editor.locator('.view-lines').first().click();
      await page.keyboard.press('Control+G');
      await input.waitFor({ state: 'visible', timeout: 15000 });
      await input.fill(':17');
      await page.keyboard.press('Enter');
      await page.keyboard.press('End');
      await page.keyboard.press('Control+.');
      const fix = page.locator('.action-widget, .context-view', { hasText: 'Fix DD101' }).first();
      await fix.waitFor({ timeout: 15000 });
      const entries = (await fix.innerText()).split('\n').map(t => t.trim()).filter(Boolean);
      if (!entries.some(t => t.startsWith('Ignore DD101 on this line'))) throw new Error(`the quick fix menu lacks the ignore action: ${JSON.stringify(entries)}`);
      await c.screenshot(page, 'ui-diagnose-quickfix');
      await page.keyboard.press('Escape');
      // the measured diagnosis: a job with a progress notification, then the dashboard panel opens beside the
      // editor on the Diagnosis section (the sidebar's dashboard shows it too: the panel is the one in the editor area)
      await c.runCommand(page, 'Deepdive: Diagnose Performance');
      await page.locator('.notification-toast', { hasText: 'Deepdive: diagnosing diagnose_ui.py' }).first().waitFor({ timeout: 20000 });
      await page.locator('.tab', { hasText: 'Deepdive Dashboard' }).first().waitFor({ timeout: 150000 });
      const editorLeft = (await page.locator('.part.editor').first().boundingBox()).x;
      const inEditorArea = async f => {
        const el = await f.frameElement().catch(() => null);
        const box = el && await el.boundingBox().catch(() => null);
        return !!box && box.width > 0 && box.x >= editorLeft;
      };
      let seen = null;
      let frame = null;
      await c.waitFor('the dashboard panel\'s Diagnosis section to show the report of diagnose_ui.py', async () => {
        for (const f of page.frames()) {
          if (!(await inEditorArea(f))) continue;
          const s = await f.evaluate(() => {
            const d = window.__deepdiveDashboard;
            if (!d || !d.diagnoseReport) return null;
            const body = document.getElementById('diagnose-body');
            return { shown: d.diagnoseShown(), report: d.diagnoseReport(), segments: d.diagnoseSegments(), visible: !!body && !body.hidden,
              findings: [...document.querySelectorAll('#diagnose-findings li')].map(li => li.innerText.replace(/\s+/g, ' ').slice(0, 120)) };
          }).catch(() => null);
          if (s && s.report && s.shown && s.shown.endsWith('diagnose_ui.py')) { seen = s; frame = f; return s.visible && s.segments > 0; }
          if (s) seen = s;
        }
        return false;
      }, 30000, 1000).catch(e => { e.message += `\nlast seen: ${JSON.stringify(seen)}`; throw e; });
      // the editor asked the page to scroll to the section: its heading is in view
      await c.waitFor('the Diagnosis section scrolled into view', () => frame.evaluate(() => {
        const r = document.getElementById('diagnose-h').getBoundingClientRect();
        return r.top >= 0 && r.top < window.innerHeight;
      }), 10000, 250);
      const focused = await page.evaluate(() => !!document.activeElement && !!document.activeElement.closest('.monaco-editor'));
      if (!focused) throw new Error('the dashboard took the focus from the editor');
      await c.screenshot(page, 'ui-diagnose-page');
      console.log(`     ${T()} diagnostics: ${squiggles} squiggle(s), quick fix menu ${JSON.stringify(entries.slice(0, 4))}; report ${seen.report.stepMs} ms/step, ${seen.segments} parts drawn, findings ${JSON.stringify(seen.findings.slice(0, 3))}`);
    } finally {
      await c.runCommand(page, 'View: Close All Editors').catch(() => undefined);
      fs.rmSync(file, { force: true });
    }
  });

  // Issue #20 finding 5: every job shows one progress notification with Cancel; the deep check's figures
  // then show in the Environment view.
  await test('"Run Deep Environment Check" shows a progress notification with Cancel, then its GFLOP/s in the Environment view', async () => {
    await c.runCommand(page, 'Deepdive: Run Deep Environment Check');
    const toast = page.locator('.notification-toast', { hasText: 'Deepdive: deep environment check' }).first();
    await toast.waitFor({ timeout: 20000 });
    await toast.locator('.monaco-button', { hasText: 'Cancel' }).first().waitFor({ timeout: 5000 });
    await c.screenshot(page, 'ui-deep-check-progress');
    await c.runCommand(page, 'Deepdive: Focus on Environment View');
    await page.locator('.monaco-list-row', { hasText: /Deep check: [\d.]+ GFLOP\/s/ }).first().waitFor({ timeout: 90000 });
    await c.screenshot(page, 'ui-deep-check-environment');
  });

  // Issue #20 finding 2: an interpreter without Deepdive gets a prompt that names it and offers the extras.
  // Last: it points the workspace at a bare venv (the daemon cannot start there), then restores the setting.
  await test('an interpreter without Deepdive: the prompt names its path and offers the extras by feature', async () => {
    const pathMod = require('path');
    const bare = fs.mkdtempSync(pathMod.join(require('os').tmpdir(), 'ui-bare-'));
    const settingsDir = pathMod.join(workspace, '.vscode');
    const settings = pathMod.join(settingsDir, 'settings.json');
    require('child_process').execFileSync('python3', ['-m', 'venv', '--without-pip', bare], { stdio: 'ignore' });
    const bareReal = fs.realpathSync(pathMod.join(bare, 'bin', 'python'));
    try {
      fs.mkdirSync(settingsDir, { recursive: true });
      fs.writeFileSync(settings, JSON.stringify({ 'deepdive.pythonPath': pathMod.join(bare, 'bin', 'python') }));
      const toast = page.locator('.notification-toast', { hasText: 'Deepdive is not installed for the Python at' }).first();
      await toast.waitFor({ timeout: 30000 });
      const text = (await toast.innerText()).replace(/\s+/g, ' ');
      if (!text.includes(pathMod.dirname(pathMod.dirname(bareReal))) && !text.includes(bare)) {
        throw new Error(`the prompt does not name the interpreter's path (${bare}): ${text}`);
      }
      await c.screenshot(page, 'ui-install-prompt');
      await toast.locator('.monaco-button', { hasText: 'Install Deepdive' }).first().click();
      const picker = page.locator('.quick-input-widget');
      await picker.locator('.monaco-list-row', { hasText: /engine/i }).first().waitFor({ timeout: 15000 });
      const rows = (await picker.locator('.monaco-list-row').allInnerTexts()).map(r => r.replace(/\s+/g, ' '));
      for (const feature of [/engine/i, /tune/i, /compress/i]) {
        if (!rows.some(r => feature.test(r))) throw new Error(`the extras picker lacks ${feature}: ${JSON.stringify(rows)}`);
      }
      await c.screenshot(page, 'ui-install-extras');
      await page.keyboard.press('Escape');  // nothing is installed into the bare venv
    } finally {
      fs.rmSync(settingsDir, { recursive: true, force: true });
      fs.rmSync(bare, { recursive: true, force: true });
    }
    await statusReady(60000);  // back on the real interpreter
  });

  await c.screenshot(page, 'ui-final');
  if (b.pageErrors.length) console.log(`     page errors seen (not failures): ${b.pageErrors.length}, first: ${b.pageErrors[0]}`);
  await b.close();
  console.log(`${T()} ui: ${rec.results.length - rec.failed()} passed, ${rec.failed()} failed`);
  return rec.failed() ? 1 : 0;
}

main().then(code => process.exit(code), e => {
  console.error('ui e2e crashed:', e);
  process.exit(2);
});
