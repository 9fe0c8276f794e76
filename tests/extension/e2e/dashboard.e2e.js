// Browser e2e of the dashboard page: `deepdive dashboard` serves out/webview, `deepdive train` streams a
// real run (server/examples/digits.py) to its hub, headless Chromium opens the printed URL. Asserts that
// the connection goes live (and comes back after a drop, without duplicate points), the Devices panel
// shows GPUs or the reason there are none, the run's charts receive points, the run is listed with its
// step and the verdict appears; past runs are named by script and start time (training runs by default);
// charts without data on this machine say why; at 300 px (the sidebar) and 1000 px (an editor tab) no two
// axis labels intersect and no text overflows its card (screenshots test-results/dashboard-sidebar.png and
// test-results/dashboard-tab.png); a 4-trial `deepdive tune --confirm 2 --confirm-seeds 2` fills the Tune section
// and its Confirmed block (the top 2 re-trained, the best mean chosen and marked, the reason; dashboard-tune.png);
// a `deepdive deploy serve` of the digits CNN under a client load fills the Serving section (dashboard-serve.png). Screenshot (always): test-results/e2e/dashboard.png. Everything it starts
// runs in its own process group and is killed on exit.
//
// Environment: E2E_REPO (default: the repo of this file), E2E_PYTHON (default <repo>/.venv/bin/python),
// E2E_RESULTS / E2E_ARTIFACTS (set by run.sh), CHROMIUM.
'use strict';
const cp = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { clock, launch, recorder, screenshot, waitFor } = require('./lib/common');

const REPO = process.env.E2E_REPO || path.resolve(__dirname, '../../..');
const PYTHON = process.env.E2E_PYTHON || path.join(REPO, '.venv/bin/python');
// standalone (outside run.sh): results and the screenshot still go to test-results/e2e/
process.env.E2E_ARTIFACTS = process.env.E2E_ARTIFACTS || path.join(REPO, 'test-results/e2e');
process.env.E2E_RESULTS = process.env.E2E_RESULTS || path.join(process.env.E2E_ARTIFACTS, 'results-dashboard.jsonl');
fs.mkdirSync(process.env.E2E_ARTIFACTS, { recursive: true });
const { record, failed } = recorder('dashboard');
// A closed-loop client load on a `deepdive deploy serve`: N threads posting one-row Open Inference Protocol v2
// JSON infer requests for S seconds (argv: URL MODEL S N); an answer that is not 200 ends the thread and is printed.
const LOAD = `
import sys, threading, time
import httpx
url, model, seconds, clients = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
body = {"inputs": [{"name": "input__0", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.25] * 64}]}
answered = []
def client():
    with httpx.Client(timeout=10) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r = c.post(f"{url}/v2/models/{model}/infer", json=body)
            if r.status_code != 200:
                print("answer", r.status_code, r.text[:200], flush=True)
                return
            answered.append(1)
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print("answered", len(answered), flush=True)
`;
const elapsed = clock();
const children = [];

function spawn(name, args, env, logFile) {
  const out = fs.openSync(logFile, 'w');
  const child = cp.spawn(PYTHON, args, { cwd: REPO, env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  children.push({ name, child });
  return child;
}

function killAll() {
  for (const { child } of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
    }
  }
  const deadline = Date.now() + 5000;
  for (const { child } of children) {
    while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
      try { process.kill(-child.pid, 0); } catch { break; }
      cp.spawnSync('sleep', ['0.1']);
    }
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const v = await fn();
    record(name, true, Date.now() - t0);
    return v;
  } catch (e) {
    record(name, false, Date.now() - t0, e);
    throw e;
  }
}

(async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-e2e-'));
  const artifacts = process.env.E2E_ARTIFACTS;
  const env = { ...process.env, DEEPDIVE_HOME: path.join(tmp, 'home'), XDG_DATA_HOME: path.join(tmp, 'xdg'),
    DEEPDIVE_DASHBOARD_DIR: path.join(REPO, 'out/webview'), PYTHONUNBUFFERED: '1' };
  delete env.DEEPDIVE_HUB;
  const dashLog = path.join(artifacts, 'dashboard-cli.log');
  const trainLog = path.join(artifacts, 'dashboard-train.log');
  let browser;
  try {
    const url = await step('deepdive dashboard prints its URL', async () => {
      spawn('dashboard', ['-m', 'deepdive', 'dashboard', '--no-browser', '--port', '0'], env, dashLog);
      return waitFor('the dashboard URL in its output', () => {
        const m = fs.readFileSync(dashLog, 'utf8').match(/http:\/\/127\.0\.0\.1:\d+\/\?token=[\w-]+/);
        return m && m[0];
      }, 30000);
    });
    const hub = (fs.readFileSync(dashLog, 'utf8').match(/ws:\/\/127\.0\.0\.1:\d+\/ingest\?token=[\w-]+/) || [])[0];
    spawn('train', ['-m', 'deepdive', 'train', path.join(REPO, 'server/examples/digits.py'), '--nproc', '1', '--',
      '--epochs', '30', '--compression', 'none'], hub ? { ...env, DEEPDIVE_HUB: hub } : env, trainLog);

    browser = await launch();
    const { page, pageErrors } = browser;
    const hook = (expr) => page.evaluate(`window.__deepdiveDashboard ? (${expr}) : null`);
    await step('the page loads and its stream goes live', async () => {
      await page.goto(url);
      await waitFor('connection "live"', async () => (await hook('window.__deepdiveDashboard.connection()')) === 'open', 20000);
      const label = await page.locator('#conn').innerText();
      if (label !== 'live') throw new Error(`connection label is ${JSON.stringify(label)}`);
    });
    await step('Devices shows GPUs or why there are none', async () => {
      await waitFor('a machine sample', () => hook('window.__deepdiveDashboard.machineSeen()'), 15000);
      const gpus = await hook('window.__deepdiveDashboard.gpus()');
      const text = await page.locator('#devices-body').innerText();
      if (gpus > 0) {
        if (!/GPU 0/.test(text)) throw new Error(`${gpus} GPUs but the panel says ${JSON.stringify(text)}`);
      } else if (!/^No GPUs: \S/.test(text)) {
        throw new Error(`no GPUs and no reason: ${JSON.stringify(text)}`);
      }
      const host = await page.locator('#host-body').innerText();
      if (!/CPU/.test(host) || !/%/.test(host)) throw new Error(`Host panel: ${JSON.stringify(host)}`);
    });
    await step('the run\'s charts receive points (step time, throughput, loss)', async () => {
      await waitFor('points in the run\'s charts', async () => {
        const n = await hook(`[window.__deepdiveDashboard.pointCount('step_time_s'),
          window.__deepdiveDashboard.pointCount('samples_per_s'), window.__deepdiveDashboard.pointCount('loss')]`);
        return n && n.every(x => x >= 10);
      }, 90000, 500);
      for (const id of ['step_time', 'throughput', 'loss']) {
        const box = page.locator(`.chart[data-chart="${id}"]`);
        if (!(await box.isVisible())) throw new Error(`chart ${id} is hidden`);
        if (!(await box.locator('canvas').count())) throw new Error(`chart ${id} has no uPlot canvas`);
        if (!(+(await box.getAttribute('data-points')) > 0)) throw new Error(`chart ${id} has no data-points`);
      }
      const runs = await hook('window.__deepdiveDashboard.runs()');
      if (!runs.length || runs[0].lastStep === null) throw new Error(`Runs seen: ${JSON.stringify(runs)}`);
      const listed = await page.locator('#runs-body li.run').first().innerText();
      if (!listed.includes(runs[0].id) || !/step \d+/.test(listed)) throw new Error(`Runs seen shows ${JSON.stringify(listed)}`);
    });
    await step('the verdict appears with its sentence and fix', async () => {
      await waitFor('a verdict', () => hook('window.__deepdiveDashboard.verdict()'), 90000, 500);
      await waitFor('the verdict rendered', async () => (await page.locator('#verdict-body .sentence').count()) > 0, 5000);
      const text = await page.locator('#verdict-body').innerText();
      if (!/Fix:/.test(text)) throw new Error(`verdict panel: ${JSON.stringify(text)}`);
      console.log(`     verdict: ${text.split('\n').filter(Boolean).slice(0, 3).join(' | ')}`);
    });
    await step('past runs are listed and two of them overlay on one step axis', async () => {
      // a second, short run; the first may still be going (past runs include running ones)
      spawn('train2', ['-m', 'deepdive', 'train', path.join(REPO, 'server/examples/digits.py'), '--nproc', '1', '--',
        '--epochs', '2', '--compression', 'none'], hub ? { ...env, DEEPDIVE_HUB: hub } : env, path.join(artifacts, 'dashboard-train2.log'));
      await waitFor('two past runs listed', async () => ((await hook('window.__deepdiveDashboard.pastRuns()')) || []).length >= 2, 90000, 1000);
      await waitFor('the short run completed', async () => ((await hook('window.__deepdiveDashboard.pastRuns()')) || []).some(r => r.outcome === 'completed'), 90000, 1000);
      const items = page.locator('#past-body li');
      await items.nth(0).click();
      await items.nth(1).click();
      await waitFor('both runs in the loss overlay', async () => {
        const pts = await hook('window.__deepdiveDashboard.overlayPoints(\'loss\')');
        return pts && pts.length === 2 && pts.every(n => n > 0);
      }, 20000, 500);
      const title = await page.locator('#compare-title').innerText();
      if (!/ vs /.test(title)) throw new Error(`compare title: ${JSON.stringify(title)}`);
      if (!(await page.locator('.chart[data-chart="compare-loss"] canvas').count())) throw new Error('no overlay canvas');
      await screenshot(page, 'dashboard-compare');
    });
    await step('past runs are named by their script and start time; training runs are listed by default', async () => {
      const past = await hook('window.__deepdiveDashboard.pastRuns()');
      const train = past.filter(r => r.kind === 'train');
      if (train.length < 2 || !train.every(r => /^digits\.py · ([A-Z][a-z]{2} \d+ )?\d\d:\d\d$/.test(r.label))) {
        throw new Error(`past runs: ${JSON.stringify(past)}`);
      }
      if ((await hook('window.__deepdiveDashboard.pastTab()')) !== 'train') throw new Error('the default tab is not Training');
      const first = await page.locator('#past-body li').first().innerText();
      if (!/^digits\.py · \d\d:\d\d/.test(first)) throw new Error(`first past run reads ${JSON.stringify(first)}`);
      if (!/^Training \d+/.test(await page.locator('#past-body .tab[aria-selected="true"]').innerText())) throw new Error('no Training tab selected');
    });
    await step('a chart with no data on this machine says why (loss scale, communication)', async () => {
      const reasons = await hook('window.__deepdiveDashboard.chartReasons()');
      // digits.py on this machine: one process, bf16 or fp32 (fp16 only on a GPU without bf16)
      if (!/^No loss scaling: this run trains in (bf16|fp32)/.test(reasons.loss_scale || '')) throw new Error(`reasons: ${JSON.stringify(reasons)}`);
      if (!/^No gradient communication: this run has one process/.test(reasons.comm_bytes || '')) throw new Error(`reasons: ${JSON.stringify(reasons)}`);
      const shown = await page.locator('.chart[data-chart="loss_scale"] .chart-why').innerText();
      if (shown !== reasons.loss_scale) throw new Error(`the loss-scale chart shows ${JSON.stringify(shown)}`);
    });
    for (const [shot, width] of [['dashboard-sidebar', 300], ['dashboard-tab', 1000]]) {
      await step(`at ${width} px wide no two axis labels intersect and no text overflows its card`, async () => {
        await page.setViewportSize({ width, height: 900 });
        await page.waitForTimeout(1000);   // the resize handler's debounce and a redraw
        const charts = await hook('window.__deepdiveDashboard.axisLabels()');
        if (!charts || charts.length < 4) throw new Error(`only ${charts && charts.length} charts drawn`);
        const problems = [];
        for (const c of charts) {
          const b = c.boxes;
          if (!b.some(l => l.axis === 0) || !b.some(l => l.axis > 0)) problems.push(`${c.chart}: labels on one axis only: ${JSON.stringify(b.map(l => l.text))}`);
          for (let i = 0; i < b.length; i++) {
            if (b[i].left < c.card.left - 0.5 || b[i].right > c.card.right + 0.5) problems.push(`${c.chart}: label ${JSON.stringify(b[i].text)} leaves its card`);
            for (let j = i + 1; j < b.length; j++) {
              const x = Math.min(b[i].right, b[j].right) - Math.max(b[i].left, b[j].left);
              const y = Math.min(b[i].bottom, b[j].bottom) - Math.max(b[i].top, b[j].top);
              if (x > 0 && y > 0) problems.push(`${c.chart}: labels ${JSON.stringify(b[i].text)} and ${JSON.stringify(b[j].text)} intersect`);
            }
          }
        }
        problems.push(...await page.evaluate(textOverflows));
        if (problems.length) throw new Error(problems.slice(0, 12).join('\n'));
        await page.screenshot({ path: path.join(REPO, 'test-results', `${shot}.png`), fullPage: true });
      });
    }
    await page.setViewportSize({ width: 1400, height: 900 });
    await step('a dropped stream reconnects by itself, without duplicate points', async () => {
      const before = await hook('window.__deepdiveDashboard.pointCount(\'step_time_s\')');
      await hook('window.__deepdiveDashboard.dropConnection()');
      await waitFor('the second connection', async () => (await hook('window.__deepdiveDashboard.opens()')) >= 2
        && (await hook('window.__deepdiveDashboard.connection()')) === 'open', 20000);
      await page.waitForTimeout(1500);   // the new snapshot and some live samples
      const times = await hook('window.__deepdiveDashboard.times(\'step_time_s\')');
      if (times.length < before) throw new Error(`points went from ${before} to ${times.length}`);
      for (let i = 1; i < times.length; i++) {
        if (!(times[i] > times[i - 1])) throw new Error(`point ${i} at t=${times[i]} repeats or precedes t=${times[i - 1]}`);
      }
      if ((await page.locator('#conn').innerText()) !== 'live') throw new Error('the label is not "live" again');
    });
    await step('a tune study streams to the Tune section: trials, history, best, the confirmed top 2', async () => {
      const study = 'e2e-dashboard';
      spawn('tune', ['-m', 'deepdive', 'tune', path.join(REPO, 'server/examples/digits.py'), '--trials', '4', '--study', study,
        '--storage', `sqlite:///${path.join(tmp, 'tune.db')}`, '--metric', 'accuracy', '--direction', 'maximize',
        '--confirm', '2', '--confirm-seeds', '2', '--',
        '--epochs', '2', '--compression', 'none'], hub ? { ...env, DEEPDIVE_HUB: hub } : env, path.join(artifacts, 'dashboard-tune.log'));
      const studyOf = async () => ((await hook('window.__deepdiveDashboard.tuneStudies()')) || []).find(s => s.study === study);
      await waitFor('the study in the Tune section', studyOf, 60000, 500);
      const done = await waitFor('the study done (4 trials)', async () => { const s = await studyOf(); return s && s.done && s; }, 240000, 1000);
      const trials = await hook(`window.__deepdiveDashboard.tuneTrials(${JSON.stringify(study)})`);
      const complete = trials.filter(t => t.state === 'complete');
      if (trials.length !== 4 || complete.length < 1) throw new Error(`trials: ${JSON.stringify(trials)}`);
      for (const t of complete) {
        if (typeof t.value !== 'number' || typeof t.params.lr !== 'number') throw new Error(`complete trial without value or params: ${JSON.stringify(t)}`);
      }
      const best = await hook(`window.__deepdiveDashboard.tuneBest(${JSON.stringify(study)})`);
      if (!best || best.value !== Math.max(...complete.map(t => t.value))) throw new Error(`best ${JSON.stringify(best)} of ${JSON.stringify(complete.map(t => t.value))}`);
      await waitFor('the history chart\'s points', async () => +(await page.locator('#tune-history').getAttribute('data-points')) === complete.length, 5000);
      if (!(await page.locator('#tune-history canvas').count())) throw new Error('the history chart has no uPlot canvas');
      const rows = await page.locator('#tune-trials tr[data-state="complete"]').count();
      if (rows !== complete.length) throw new Error(`${rows} complete rows in the trials table, ${complete.length} complete trials`);
      const meta = await page.locator('#tune-meta').innerText();
      if (!/maximize accuracy/.test(meta)) throw new Error(`Tune meta line: ${JSON.stringify(meta)}`);
      // --confirm 2 --confirm-seeds 2: the top 2 complete trials re-trained with seeds 1 and 2; the best mean is the answer
      const conf = await hook(`window.__deepdiveDashboard.tuneConfirmation(${JSON.stringify(study)})`);
      const top = Math.min(2, complete.length);
      if (!conf || !conf.finished || conf.candidates.length !== top || conf.seeds.join() !== '1,2' || !conf.reason) {
        throw new Error(`confirmation: ${JSON.stringify(conf)}`);
      }
      const ranked = [...complete].sort((a, b) => b.value - a.value).slice(0, top).map(t => t.number);
      if (conf.candidates.map(c => c.number).join() !== ranked.join()) throw new Error(`re-trained ${JSON.stringify(conf.candidates)}, top trials ${ranked}`);
      const means = conf.candidates.filter(c => c.mean !== null);
      if (means.length && conf.chosen !== means.reduce((a, b) => (b.mean > a.mean ? b : a)).number) throw new Error(`chosen ${conf.chosen} is not the best mean: ${JSON.stringify(conf.candidates)}`);
      if (conf.chosenNumber !== (conf.chosen ?? best.number)) throw new Error(`tune.done's answer ${conf.chosenNumber}, the confirmation chose ${conf.chosen}`);
      const box = page.locator('#tune-confirm');
      if ((await box.getAttribute('data-state')) !== 'finished' || +(await box.getAttribute('data-rows')) !== top) throw new Error('the Confirmed block is not shown finished with its rows');
      if (!/^Confirmed: top 2 re-trained with seeds 1, 2/.test(await box.locator('.title').innerText())) throw new Error(`Confirmed title: ${await box.locator('.title').innerText()}`);
      if (conf.chosen !== null && (await box.locator(`tr[data-chosen="true"][data-trial="${conf.chosen}"]`).count()) !== 1) throw new Error('the chosen trial is not marked in the Confirmed table');
      if ((await box.locator('.tune-confirm-reason').innerText()).trim() !== conf.reason) throw new Error('the Confirmed block does not say why');
      if (+(await box.locator('canvas').getAttribute('data-columns')) !== top) throw new Error('the Confirmed plot has no column per re-trained trial');
      console.log(`     tune: ${done.complete} complete, ${done.pruned} pruned, ${done.fail} failed; best #${best.number} accuracy ${best.value}; ${conf.reason}`);
      await page.locator('.tune-panel').scrollIntoViewIfNeeded();
      await screenshot(page, 'dashboard-tune');
    });
    await step('a compress run streams to the Compression section: original and quantize rows, bars', async () => {
      const model = path.join(tmp, 'digits.pt');
      const train = spawn('compress-train', [path.join(REPO, 'server/examples/digits.py'), '--epochs', '2', '--precision', 'fp32',
        '--save', model], env, path.join(artifacts, 'dashboard-compress-train.log'));
      const code = await new Promise(r => (train.exitCode !== null ? r(train.exitCode) : train.on('exit', c => r(c))));
      if (code !== 0 || !fs.existsSync(model)) throw new Error(`digits.py --save exited ${code}; see dashboard-compress-train.log`);
      spawn('compress', ['-m', 'deepdive', 'compress', model, '--eval', path.join(REPO, 'server/examples/digits_eval.py'),
        '--quantize', 'int8', '--target', 'x86'], hub ? { ...env, DEEPDIVE_HUB: hub } : env, path.join(artifacts, 'dashboard-compress.log'));
      const entry = async () => ((await hook('window.__deepdiveDashboard.compressModels()')) || []).find(m => m.model === 'digits');
      await waitFor('the model in the Compression section', entry, 60000, 500);
      await waitFor('its report', async () => { const m = await entry(); return m && m.done && m; }, 120000, 1000);
      const steps = await hook('window.__deepdiveDashboard.compressSteps(\'digits\')');
      if (steps.map(s => s.step).join() !== 'original,quantize') throw new Error(`steps: ${JSON.stringify(steps)}`);
      if (!(steps[1].sizeMb < steps[0].sizeMb) || !(steps[1].accuracy > 0.5)) throw new Error(`quantize row: ${JSON.stringify(steps[1])}`);
      await waitFor('the quantize row in the table', async () => (await page.locator('#compress-table tr[data-step="quantize"]').count()) === 1, 5000);
      const bars = await hook('window.__deepdiveDashboard.compressBars()');
      if (!(bars >= 3) || +(await page.locator('#compress-chart').getAttribute('data-bars')) !== bars) throw new Error(`${bars} bars drawn`);
      console.log(`     compress: ${steps.map(s => `${s.step} ${s.sizeMb.toFixed(3)} MB`).join(', ')}; ${bars} bars`);
      await page.locator('.compress-panel').scrollIntoViewIfNeeded();
      await screenshot(page, 'dashboard-compress');
    });
    await step('a deepdive deploy serve under a client load fills the Serving section: requests/s, batch sizes, latency', async () => {
      if (await hook('window.__deepdiveDashboard.serveVisible()')) throw new Error('the Serving section shows before any server reported');
      const folder = path.join(tmp, 'deploy-digits');
      const exported = spawn('deploy-export', ['-m', 'deepdive', 'deploy', 'export', path.join(REPO, 'server/examples/digits_cnn.py'),
        '--out', folder, '--forms', 'eager'], env, path.join(artifacts, 'dashboard-deploy-export.log'));
      const code = await new Promise(r => (exported.exitCode !== null ? r(exported.exitCode) : exported.on('exit', c => r(c))));
      if (code !== 0) throw new Error(`deploy export exited ${code}; see dashboard-deploy-export.log`);
      const serveLog = path.join(artifacts, 'dashboard-deploy-serve.log');
      spawn('deploy-serve', ['-m', 'deepdive', 'deploy', 'serve', folder, '--port', '0', '--max-batch', '16'],
        hub ? { ...env, DEEPDIVE_HUB: hub } : env, serveLog);
      const server = await waitFor('the server\'s URL in its output', () => {
        const m = fs.readFileSync(serveLog, 'utf8').match(/^serving (\S+) \(.*\) at (http:\/\/127\.0\.0\.1:\d+)\//m);
        return m && { model: m[1], url: m[2] };
      }, 90000, 500);
      // the load: 8 closed-loop clients posting one-row Open Inference Protocol JSON requests for 40 s
      spawn('deploy-load', ['-c', LOAD, server.url, server.model, '40', '8'], env, path.join(artifacts, 'dashboard-deploy-load.log'));
      await waitFor('the Serving section shown', () => hook('window.__deepdiveDashboard.serveVisible()'), 20000, 500);
      const shown = await waitFor('requests/s points, batches of more than one row and latency figures', async () => {
        const s = await hook('window.__deepdiveDashboard.serveShown()');
        return s && s.ratePoints >= 3 && s.lastRate > 0 && s.histogram.some(([rows]) => rows > 1) && s.latency.p99 !== null && s;
      }, 60000, 500);
      if (shown.url !== server.url || shown.model !== server.model) throw new Error(`the section shows ${JSON.stringify(shown)}`);
      if (!shown.histogram.every(([rows]) => rows >= 1 && rows <= 16)) throw new Error(`batch sizes over --max-batch 16: ${JSON.stringify(shown.histogram)}`);
      await waitFor('the requests/s chart drawn', async () => +(await page.locator('#serve-rate').getAttribute('data-points')) >= 3
        && (await page.locator('#serve-rate canvas').count()) > 0, 5000);
      if (!(await page.locator('#serve-latency canvas').count())) throw new Error('the latency chart has no uPlot canvas');
      const bars = await hook('window.__deepdiveDashboard.serveBars()');
      if (!(bars >= 2) || +(await page.locator('#serve-histogram').getAttribute('data-bars')) !== bars) throw new Error(`${bars} histogram bars drawn`);
      const latency = await page.locator('#serve-figures tr[data-figure="latency"]').innerText();
      if (!/p50 [\d.]+ m?s/.test(latency) || !/p99 [\d.]+ m?s/.test(latency)) throw new Error(`latency row: ${JSON.stringify(latency)}`);
      const queue = await page.locator('#serve-figures tr[data-figure="queue delay"]').innerText();
      if (!/p99 [\d.]+ m?s/.test(queue)) throw new Error(`queue delay row: ${JSON.stringify(queue)}`);
      const runs = await hook('window.__deepdiveDashboard.runs()');
      if (runs.some(r => r.id.startsWith('serve-'))) throw new Error(`the server is listed as a training run: ${JSON.stringify(runs)}`);
      console.log(`     serve: ${shown.lastRate} requests/s, batches ${shown.histogram.map(([r, n]) => `${r}×${n}`).join(' ')}, `
        + `latency p50 ${shown.latency.p50} ms p99 ${shown.latency.p99} ms`);
      await page.locator('.serve-panel').scrollIntoViewIfNeeded();
      await screenshot(page, 'dashboard-serve');
    });
    await step('no page errors', async () => {
      if (pageErrors.length) throw new Error(pageErrors.join('\n'));
    });
  } catch {
    // recorded by step(); the screenshot and cleanup still happen
  } finally {
    if (browser) {
      await page_screenshot(browser.page);
      await browser.close();
    }
    killAll();
    fs.rmSync(tmp, { recursive: true, force: true });
    console.log(`     dashboard e2e took ${elapsed()}`);
  }
  process.exit(failed() ? 1 : 0);
})();

/**
 * In the page: every piece of visible text whose visible part (clipped by the boxes between it and its
 * card that hide overflow, as ellipsised labels and scrolling tables do) reaches outside its card
 * (.panel, .chart, .card), and a page wider than the window.
 */
function textOverflows() {
  const bad = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) bad.push(`the page scrolls sideways: ${root.scrollWidth} > ${root.clientWidth} px`);
  for (const card of document.querySelectorAll('.panel, .chart, .card')) {
    if (!card.getClientRects().length) continue;   // not displayed
    const cr = card.getBoundingClientRect();
    const walker = document.createTreeWalker(card, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (!n.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(n);
      for (const r of range.getClientRects()) {
        if (r.width === 0) continue;
        let left = r.left, right = r.right;
        for (let el = n.parentElement; el && el !== card; el = el.parentElement) {
          if (getComputedStyle(el).overflowX !== 'visible') {
            const er = el.getBoundingClientRect();
            left = Math.max(left, er.left);
            right = Math.min(right, er.right);
          }
        }
        if (right > left && (left < cr.left - 1 || right > cr.right + 1)) {
          bad.push(`"${n.textContent.trim().slice(0, 40)}" overflows ${card.className.split(' ')[0]} by ${Math.round(Math.max(cr.left - left, right - cr.right))} px`);
        }
      }
    }
  }
  return bad;
}

async function page_screenshot(page) {
  await page.waitForTimeout(300).catch(() => {});
  await screenshot(page, 'dashboard');
}
