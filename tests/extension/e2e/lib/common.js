// Shared helpers of the e2e harness: headless Chromium via playwright-core, the code-server workbench,
// the process tree of code-server (to find Deepdive's daemon) and the results file run.sh sums up.
'use strict';
const { chromium } = require('playwright-core');
const cp = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`environment variable ${name} is not set (run this through tests/extension/e2e/run.sh)`);
  }
  return v;
};
exports.env = env;

exports.clock = () => {
  const t0 = Date.now();
  return () => ((Date.now() - t0) / 1000).toFixed(1) + 's';
};

exports.sleep = ms => new Promise(r => setTimeout(r, ms));

/** Polls fn() until it returns a truthy value; throws `what` (with the last error) after timeoutMs. */
exports.waitFor = async (what, fn, timeoutMs, intervalMs = 250) => {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await exports.sleep(intervalMs);
  }
};

// ---------------------------------------------------------------------------------------------------
// Results: one JSON object per line in $E2E_RESULTS ({suite, name, ok, ms, error}); run.sh counts them.
// ---------------------------------------------------------------------------------------------------
exports.recorder = suite => {
  const file = env('E2E_RESULTS');
  const results = [];
  const record = (name, ok, ms, error) => {
    const r = { suite, name, ok, ms, error: error ? String(error.stack || error).slice(0, 4000) : undefined };
    results.push(r);
    fs.appendFileSync(file, JSON.stringify(r) + '\n');
    console.log(`${ok ? 'PASS' : 'FAIL'} [${suite}] ${name} (${(ms / 1000).toFixed(1)}s)${ok ? '' : '\n     ' + String(error && error.message || error).split('\n').join('\n     ')}`);
  };
  return { results, record, failed: () => results.filter(r => !r.ok).length };
};

// ---------------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------------
/** All processes as {pid, ppid, sid, stat, args}. */
function processes() {
  const out = cp.execFileSync('ps', ['-e', '-ww', '-o', 'pid=,ppid=,sid=,stat=,args='], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map(line => {
    const m = line.trim().match(/^(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/);
    return m && { pid: +m[1], ppid: +m[2], sid: +m[3], stat: m[4], args: m[5] };
  }).filter(Boolean);
}
exports.processes = processes;

/** Live (non-zombie) processes below `rootPid` (its descendants) or in its session. */
exports.processTree = rootPid => {
  const all = processes();
  const below = new Set([rootPid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of all) if (!below.has(p.pid) && below.has(p.ppid)) { below.add(p.pid); grew = true; }
  }
  return all.filter(p => (below.has(p.pid) || p.sid === rootPid) && p.pid !== rootPid && !p.stat.startsWith('Z'));
};

const DAEMON_RE = /(^|\s)-m\s+deepdive\s+serve(\s|$)/;
/** Deepdive daemons (`<python> -m deepdive serve`) in code-server's process tree. */
exports.daemons = csPid => exports.processTree(csPid).filter(p => DAEMON_RE.test(p.args) && !/^\S*(ps|pgrep)\s/.test(p.args));

exports.alive = pid => {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
};

// ---------------------------------------------------------------------------------------------------
// Browser + workbench
// ---------------------------------------------------------------------------------------------------
exports.launch = async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-'));   // a fresh, empty profile each run
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps'],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const pageErrors = [];
  page.on('pageerror', e => pageErrors.push(String(e).slice(0, 300)));
  return {
    ctx, page, pageErrors,
    close: async () => {
      await ctx.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
};

exports.workbenchUrl = (port, folder, extraQuery = '') =>
  `http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}${extraQuery}`;

exports.openWorkbench = async (page, port, folder) => {
  await page.goto(exports.workbenchUrl(port, folder));
  await page.waitForSelector('.monaco-workbench .part.statusbar', { timeout: 60000 });
};

/** Runs a command by its title from the command palette (F1), like a user. */
exports.runCommand = async (page, title) => {
  await page.keyboard.press('Escape');
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 15000 });
  await input.fill('>' + title);
  const row = page.locator('.quick-input-widget .monaco-list-row', { hasText: title }).first();
  await row.waitFor({ timeout: 15000 });
  await row.click();
  await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 15000 });
};

/** Visible notification toasts as text (the first line of each). */
exports.toasts = async page =>
  (await page.locator('.notifications-toasts .notification-toast .notification-list-item-message').allInnerTexts())
    .map(t => t.replace(/\s+/g, ' ').trim());

/** The whole text of the active editor: reads the rendered lines while paging from top to bottom
 *  (Monaco renders only what is on screen). */
exports.activeEditorText = async page => {
  const editor = page.locator('.editor-group-container.active .monaco-editor').first();
  await editor.waitFor({ state: 'visible', timeout: 15000 });
  await editor.locator('.view-lines').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('Control+Home');
  const seen = new Map();   // a rendered line's top offset in the document (px) -> its text
  for (let i = 0; i < 40; i++) {
    await page.waitForTimeout(100);
    const lines = await editor.evaluate(el => [...el.querySelectorAll('.view-lines .view-line')]
      .map(l => [parseFloat(l.style.top) || 0, l.textContent.replace(/\u00a0/g, ' ')]));
    const before = seen.size;
    for (const [top, text] of lines) seen.set(top, text);
    if (i > 0 && seen.size === before) break;   // paging shows nothing new: at the end
    await page.keyboard.press('PageDown');
  }
  await page.keyboard.press('Control+Home');
  return [...seen.entries()].sort((a, b) => a[0] - b[0]).map(e => e[1]).join('\n');
};

exports.screenshot = async (page, name) => {
  const dir = env('E2E_ARTIFACTS');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  try {
    await page.screenshot({ path: file, timeout: 10000 });
    console.log(`     screenshot: ${file}`);
  } catch (e) {
    console.log(`     (screenshot ${name} failed: ${e.message})`);
  }
};
