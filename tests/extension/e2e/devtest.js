// Runs the extension's integration tests INSIDE code-server's extension host, like @vscode/test-electron
// does with a desktop VS Code: the workbench is opened with a `payload` naming the extension under
// development (the repo root: package.json + out/extension.js) and the tests' entry (exports.run()).
// code-server must run with `--vscode-option enable-smoke-test-driver` (run.sh does), which makes the web
// workbench honour the payload and report the tests' outcome through window.codeAutomationExit().
// The tests write their per-test results to $E2E_RESULTS themselves (the extension host inherits
// code-server's environment); this runner adds a failure when they never ran or did not finish.
'use strict';
const c = require('./lib/common');
const fs = require('fs');

const port = c.env('E2E_PORT');
const devPath = c.env('E2E_DEV_PATH');
const testsPath = c.env('E2E_TESTS_PATH');
const workspace = c.env('E2E_WORKSPACE');
const timeoutMs = Number(c.env('E2E_INTEGRATION_TIMEOUT_MS', '540000'));

async function main() {
  const T = c.clock();
  const resultsFile = c.env('E2E_RESULTS');
  const countLines = () => (fs.existsSync(resultsFile) ? fs.readFileSync(resultsFile, 'utf8').split('\n').filter(l => l.includes('"suite":"integration"')).length : 0);
  const before = countLines();
  const rec = c.recorder('integration');
  const b = await c.launch();
  const page = b.page;
  let done;
  const exited = new Promise(r => { done = r; });
  const noise = /ChatModelSelection|AgentHost|connection token|grace-time|open-vsx|queryGallery|getaddrinfo|Service Worker|AccountPolicyGate|builtin extensions|Creating a socket|workbench contribution|^\s+at /;
  await page.exposeFunction('codeAutomationLog', (type, args) => {
    const s = (args || []).map(a => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
    if (!noise.test(s)) console.log(`  [exthost ${type}] ${s.split('\n').filter(l => !/^\s+at /.test(l)).join('\n  ')}`);
  });
  await page.exposeFunction('codeAutomationExit', code => done(code));
  const auth = `127.0.0.1:${port}`;
  const payload = [['extensionDevelopmentPath', `vscode-remote://${auth}${devPath}`],
    ['extensionTestsPath', `vscode-remote://${auth}${testsPath}`]];
  await page.goto(c.workbenchUrl(port, workspace, `&payload=${encodeURIComponent(JSON.stringify(payload))}`));
  const code = await Promise.race([exited, c.sleep(timeoutMs).then(() => 'timeout')]);
  console.log(`${T()} integration tests exit code: ${code}`);
  const ran = countLines() - before;
  if (code === 'timeout') {
    rec.record('the integration tests finish', false, timeoutMs, new Error(`no exit from the extension host within ${timeoutMs / 1000}s (${ran} test results written)`));
  } else if (ran === 0) {
    rec.record('the integration tests run', false, 0, new Error(`the extension host exited with ${code} without running any test (is ${testsPath} loadable? see the log above)`));
  }
  if (code !== 0) await c.screenshot(page, 'integration-fail');
  await b.close();
  return code === 0 && ran > 0 && rec.failed() === 0 ? 0 : 1;
}

main().then(code => process.exit(code), e => {
  console.error('integration runner crashed:', e);
  process.exit(2);
});
