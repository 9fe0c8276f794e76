// Integration test of the daemon's broken-stream exit and the extension's restart (issue #18, item 8), run
// inside code-server's extension host LAST (it replaces the daemon): index.js calls `run(test, ctx, helpers)`.
// A message whose Content-Length is 5 bytes short is written straight into the daemon's stdin, on the very
// stream vscode-languageclient writes to: the test runs in the extension host, which spawned the daemon, so
// the daemon's ChildProcess is among the process's active handles. (Opening /proc/<pid>/fd/0 does not work:
// libuv gives a child a socketpair, not a pipe, and open(2) on a socket fails with ENXIO.) The daemon must
// notice the broken framing and exit (status 3); the extension's restart policy must bring a new daemon,
// which `deepdive/version` then names by its new pid. Plain CommonJS.
'use strict';
const assert = require('assert');

/** One LSP message whose Content-Length is `lengthError` bytes off. */
function misframed(lengthError) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 'misframed-by-the-test', method: 'deepdive/version' });
  return `Content-Length: ${Buffer.byteLength(body) + lengthError}\r\n\r\n${body}`;
}

/** The stdin of the daemon the extension host spawned (process._getActiveHandles: Node's own, undocumented). */
function daemonStdin(pid) {
  assert.strictEqual(typeof process._getActiveHandles, 'function', 'this Node has process._getActiveHandles()');
  const child = process._getActiveHandles().find(h => h && h.pid === pid && h.stdin);
  assert.ok(child, `daemon pid ${pid} is a child process of this extension host`);
  return child.stdin;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code !== 'ESRCH';
  }
}

exports.run = async function run(test, ctx, { poll }) {
  await test('a mis-framed message makes the daemon exit and the extension starts a new one', async () => {
    assert.ok(ctx.api, 'the extension did not return its API (an earlier test failed)');
    const before = await ctx.api.request('deepdive/version', {});
    const oldPid = before.pid;
    assert.ok(Number.isInteger(oldPid) && alive(oldPid), `the daemon answers with its pid, got ${JSON.stringify(before)}`);

    // The client is idle here (its last request was answered). Should it be writing after all, this may land
    // between one of its message's header and body (vscode-jsonrpc awaits between the two): the stream is
    // broken either way, which is what the daemon must detect.
    await new Promise((resolve, reject) => daemonStdin(oldPid).write(misframed(-5), e => (e ? reject(e) : resolve())));

    await poll(`daemon pid ${oldPid} to exit`, async () => ({ done: !alive(oldPid), value: oldPid }), 15000, 200);
    const newPid = await poll('deepdive/version to answer from a new daemon', async () => {
      try {
        const v = await ctx.api.request('deepdive/version', {});
        return { done: v.pid !== oldPid, value: v.pid };
      } catch (e) {
        return { done: false, value: String(e && e.message) };
      }
    }, 45000, 500);
    assert.ok(Number.isInteger(newPid) && newPid !== oldPid && alive(newPid), `a new daemon, got pid ${newPid}`);
    assert.strictEqual(ctx.api.daemonPid(), newPid, 'api.daemonPid() names the new daemon');
  }, 75000);
};
