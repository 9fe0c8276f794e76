#!/usr/bin/env bash
# End-to-end tests of the Deepdive extension in a REAL VS Code (code-server) driven by headless Chromium.
# Offline: everything comes from setup.sh's npm/apt installs; nothing is downloaded here.
#
#   npm run package && bash tests/extension/e2e/run.sh
#
# 1. ui:          installs the built .vsix into a fresh code-server, opens a workspace with train.py and,
#                 like a user, runs "Deepdive: Show Environment Report" from the command palette (the torch
#                 version must be in the editor), kill -9s the daemon (a new one must run within 10 s), runs
#                 the report again and "Deepdive: Restart Server".
# 2. integration: tests/extension/integration/index.js inside code-server's extension host, with the
#                 repo root as the extension under development (out/extension.js).
# 3. dashboard:   dashboard.e2e.js: `deepdive dashboard` serving out/webview, `deepdive train` of
#                 server/examples/digits.py streaming to it, the page in Chromium (charts get points, the
#                 verdict appears; a `deepdive deploy serve` under a client load fills the Serving section;
#                 screenshot dashboard.png).
# Screenshots, the per-test results (results.jsonl) and, on failure, code-server's logs go to
# <repo>/test-results/e2e/. The last line is the summary: `e2e: N passed, M failed`.
# Environment: DEEPDIVE_VSIX (default <repo>/deepdive-<version>.vsix), DEEPDIVE_E2E_PYTHON (default
# <repo>/.venv/bin/python), DEEPDIVE_E2E_ONLY=ui|integration|dashboard, DEEPDIVE_E2E_KEEP=1 (keep .e2e/run-<pid>/).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
T0=$(date +%s)
RESULTS_DIR=$REPO/test-results/e2e
rm -rf "$RESULTS_DIR"; mkdir -p "$RESULTS_DIR"
export E2E_RESULTS=$RESULTS_DIR/results.jsonl E2E_ARTIFACTS=$RESULTS_DIR
: > "$E2E_RESULTS"

say() { echo "e2e: $*"; }
abort() { echo "e2e: ERROR: $*" >&2; echo "e2e: 0 passed, 1 failed"; exit 1; }

bash "$HERE/setup.sh" || abort "setup failed (tests/extension/e2e/setup.sh)"
# shellcheck disable=SC1091
. "$REPO/.e2e/env.sh"

# ---- inputs ------------------------------------------------------------------------------------------
EXT_VERSION=$("$E2E_NODE" -p "require('$REPO/package.json').version" 2>/dev/null) || abort "cannot read the version from $REPO/package.json"
VSIX=${DEEPDIVE_VSIX:-$REPO/deepdive-$EXT_VERSION.vsix}
[ -f "$VSIX" ] || abort "$VSIX not found: build it first (npm run package)"
[ -f "$REPO/out/extension.js" ] || abort "$REPO/out/extension.js not found: build it first (npm run build)"
PYTHON=${DEEPDIVE_E2E_PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || abort "$PYTHON not found: create the venv first (make setup)"
TORCH_VERSION=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null | tail -n1)
[ -n "$TORCH_VERSION" ] || abort "$PYTHON cannot import torch"
export E2E_TORCH_VERSION=$TORCH_VERSION E2E_PYTHON=$PYTHON
say "vsix $(basename "$VSIX"), python $PYTHON (torch $TORCH_VERSION)"

# ---- the run's own folder (stale ones of dead runs are removed) -------------------------------------
for d in "$E2E"/run-*; do
  [ -d "$d" ] || continue
  pid=${d##*/run-}
  kill -0 "$pid" 2>/dev/null || rm -rf "$d"
done
RUN=$E2E/run-$$
mkdir -p "$RUN"
WS=$RUN/workspace
mkdir -p "$WS"
cat > "$WS/train.py" <<'EOF'
"""A tiny training script: the workspace the e2e tests open."""
import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 4), torch.randn(64, 1)
for step in range(20):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
EOF
# temp files of this run (Chromium's profile, code-server's vscode-ipc-*.sock) go with the run's folder;
# a Unix socket path must stay under 108 bytes, so a deep clone path falls back to a folder in /tmp
RUN_TMP=$RUN/tmp
[ ${#RUN_TMP} -le 50 ] || RUN_TMP=$(mktemp -d /tmp/deepdive-e2e.XXXXXX)
mkdir -p "$RUN_TMP"
export TMPDIR=$RUN_TMP
trap 'rm -rf "$RUN" "$RUN_TMP"' EXIT   # until the full cleanup below takes over
# the daemon keeps its state (job history) under XDG_DATA_HOME: a fresh one per run
export XDG_DATA_HOME=$RUN/xdg-data
mkdir -p "$XDG_DATA_HOME"
# no extension gallery: code-server would otherwise query open-vsx.org for updates
export EXTENSIONS_GALLERY='{}'

# ---- code-server lifecycle ---------------------------------------------------------------------------
CS_PID= CS_PORT= CS_DIR=
cs_dirs() {  # CS_ARGS: the data dirs of the instance in CS_DIR
  CS_ARGS=(--user-data-dir "$CS_DIR/user-data" --extensions-dir "$CS_DIR/extensions")
}
start_cs() {  # start_cs NAME SMOKE(0|1): sets CS_PID (its session and process group id), CS_PORT, CS_DIR
  local name=$1 smoke=$2
  CS_DIR=$RUN/$name
  mkdir -p "$CS_DIR/user-data/User" "$CS_DIR/extensions"
  "$E2E_NODE" -e '
    const s = {
      "deepdive.pythonPath": process.argv[1],
      "workbench.startupEditor": "none", "chat.disableAIFeatures": true, "telemetry.telemetryLevel": "off",
      "extensions.autoCheckUpdates": false, "extensions.autoUpdate": false, "update.mode": "none",
      "workbench.enableExperiments": false, "workbench.tips.enabled": false, "git.enabled": false,
      "security.workspace.trust.enabled": false, "files.hotExit": "off",
    };
    require("fs").writeFileSync(process.argv[2], JSON.stringify(s, null, 2));' "$PYTHON" "$CS_DIR/user-data/User/settings.json"
  printf 'bind-addr: 127.0.0.1:0\nauth: none\ncert: false\n' > "$CS_DIR/config.yaml"
  local smokeopt=()
  [ "$smoke" = 1 ] && smokeopt=(--vscode-option enable-smoke-test-driver)
  # setsid: code-server, its extension host and everything they spawn share one session/process group
  cs_dirs
  setsid code-server --config "$CS_DIR/config.yaml" --bind-addr 127.0.0.1:0 --auth none \
    --disable-telemetry --disable-update-check --disable-workspace-trust --disable-getting-started-override \
    "${CS_ARGS[@]}" "${smokeopt[@]}" --ignore-last-opened "$WS" > "$CS_DIR/cs.log" 2>&1 < /dev/null &
  CS_PID=$!
  local i
  for i in $(seq 1 120); do
    CS_PORT=$(grep -Eo 'HTTP server listening on http://127\.0\.0\.1:[0-9]+' "$CS_DIR/cs.log" 2>/dev/null | head -n1 | grep -Eo '[0-9]+$')
    if [ -n "$CS_PORT" ] && curl -fsS -o /dev/null "http://127.0.0.1:$CS_PORT/healthz" 2>/dev/null; then
      say "code-server ($name$([ "$smoke" = 1 ] && echo ', smoke-test driver')) on 127.0.0.1:$CS_PORT, pid $CS_PID"
      return 0
    fi
    kill -0 "$CS_PID" 2>/dev/null || break
    sleep 0.25
  done
  tail -n 30 "$CS_DIR/cs.log" >&2
  return 1
}
session_pids() { ps -e -o pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'; }
stop_cs() {  # the whole session: code-server, extension host, daemons (even those in their own group)
  [ -n "$CS_PID" ] || return 0
  local sid=$CS_PID i
  kill -TERM -- "-$sid" 2>/dev/null
  # shellcheck disable=SC2046
  kill -TERM $(session_pids "$sid") 2>/dev/null
  for i in $(seq 1 40); do
    [ -z "$(session_pids "$sid")" ] && break
    sleep 0.25
  done
  kill -KILL -- "-$sid" 2>/dev/null
  # shellcheck disable=SC2046
  kill -KILL $(session_pids "$sid") 2>/dev/null
  wait "$CS_PID" 2>/dev/null
  CS_PID=
}
save_logs() {  # code-server's logs of this instance (server, extension host, output channels)
  local name=$1 dest=$RESULTS_DIR/logs/$1
  mkdir -p "$dest"
  cp "$CS_DIR/cs.log" "$dest/" 2>/dev/null
  [ -d "$CS_DIR/user-data/logs" ] && cp -r "$CS_DIR/user-data/logs" "$dest/user-data-logs"
  say "logs of $name saved in ${dest#"$REPO"/}"
  local f
  while IFS= read -r f; do   # the extension's own output channel: the usual first clue
    echo "e2e: --- last lines of ${f#"$REPO"/}:"
    tail -n 12 "$f" | cut -c1-300 | sed 's/^/    /'
  done < <(find "$dest" -path '*deepdive.deepdive*' -name '*.log' 2>/dev/null)
}
NODE_PID=
run_node() {  # run_node SCRIPT: in the background + wait, so that a signal interrupts it at once
  timeout -k 5 "${E2E_NODE_LIMIT_S:-600}" "$E2E_NODE" "$@" &  # a guard against a hung runner; devtest.js reports its own limit first
  NODE_PID=$!
  wait "$NODE_PID"
  local rc=$?
  NODE_PID=
  return $rc
}
cleanup() {
  [ -z "$NODE_PID" ] || { kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; }
  stop_cs
  [ "${DEEPDIVE_E2E_KEEP:-0}" = 1 ] || rm -rf "$RUN" "$RUN_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() {  # record SUITE NAME OK(true|false) [ERROR]
  "$E2E_NODE" -e 'const [suite, name, ok, error] = process.argv.slice(1);
    require("fs").appendFileSync(process.env.E2E_RESULTS, JSON.stringify({ suite, name, ok: ok === "true", ms: 0, error: error || undefined }) + "\n");
    console.log(`${ok === "true" ? "PASS" : "FAIL"} [${suite}] ${name}${error ? "\n     " + error : ""}`);' "$@"
}
failures_of() { grep -c "\"suite\":\"$1\".*\"ok\":false" "$E2E_RESULTS"; }

# ---- 1. ui: the packaged extension, driven through the workbench --------------------------------------
ONLY=${DEEPDIVE_E2E_ONLY:-all}
if [ "$ONLY" = all ] || [ "$ONLY" = ui ]; then
  say "--- ui ($(( $(date +%s) - T0 ))s)"
  CS_DIR=$RUN/ui; mkdir -p "$CS_DIR"; cs_dirs
  if out=$(code-server "${CS_ARGS[@]}" --install-extension "$VSIX" --force 2>&1) && grep -q 'successfully installed' <<<"$out" \
     && code-server "${CS_ARGS[@]}" --list-extensions 2>/dev/null | grep -qx 'deepdive.deepdive'; then
    record ui "code-server --install-extension $(basename "$VSIX") installs deepdive.deepdive" true
    if start_cs ui 0; then
      before=$(failures_of ui)
      E2E_PORT=$CS_PORT E2E_CS_PID=$CS_PID E2E_WORKSPACE=$WS E2E_REPO=$REPO run_node "$HERE/ui.e2e.js"
      rc=$?
      if [ $rc -ne 0 ] && [ "$(failures_of ui)" = "$before" ]; then record ui "ui.e2e.js runs to the end" false "exited with $rc"; fi
      [ $rc -eq 0 ] || save_logs ui
    else
      record ui "code-server starts" false "see test-results/e2e/logs/ui/cs.log"
      save_logs ui
    fi
    stop_cs
  else
    record ui "code-server --install-extension $(basename "$VSIX") installs deepdive.deepdive" false "$(tail -n 5 <<<"$out")"
  fi
fi

# ---- 2. integration: tests/extension/integration inside the extension host ----------------------------
if [ "$ONLY" = all ] || [ "$ONLY" = integration ]; then
  say "--- integration ($(( $(date +%s) - T0 ))s)"
  if start_cs integration 1; then
    before=$(failures_of integration)
    E2E_PORT=$CS_PORT E2E_WORKSPACE=$WS E2E_DEV_PATH=$REPO E2E_TESTS_PATH=$REPO/tests/extension/integration/index.js \
      run_node "$HERE/devtest.js"
    rc=$?
    if [ $rc -ne 0 ] && [ "$(failures_of integration)" = "$before" ]; then record integration "devtest.js runs the tests" false "exited with $rc"; fi
    [ $rc -eq 0 ] || save_logs integration
  else
    record integration "code-server (smoke-test driver) starts" false "see test-results/e2e/logs/integration/cs.log"
    save_logs integration
  fi
  stop_cs
fi

# ---- 3. dashboard: `deepdive dashboard` + `deepdive train` + the page in Chromium ----------------------
if [ "$ONLY" = all ] || [ "$ONLY" = dashboard ]; then
  say "--- dashboard ($(( $(date +%s) - T0 ))s)"
  if [ -f "$REPO/out/webview/index.html" ] && [ -f "$REPO/out/webview/dashboard.js" ]; then
    before=$(failures_of dashboard)
    E2E_REPO=$REPO E2E_PYTHON=$PYTHON run_node "$HERE/dashboard.e2e.js"
    rc=$?
    if [ $rc -ne 0 ] && [ "$(failures_of dashboard)" = "$before" ]; then record dashboard "dashboard.e2e.js runs to the end" false "exited with $rc"; fi
  else
    record dashboard "the dashboard bundle is built" false "$REPO/out/webview/ has no index.html/dashboard.js: run npm run build"
  fi
fi

# ---- summary -----------------------------------------------------------------------------------------
PASSED=$(grep -c '"ok":true' "$E2E_RESULTS")
FAILED=$(grep -c '"ok":false' "$E2E_RESULTS")
echo
if [ "$FAILED" -gt 0 ]; then
  "$E2E_NODE" -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
    const r = JSON.parse(l); if (!r.ok) console.log(`e2e: FAILED [${r.suite}] ${r.name}` +
      (r.error ? `\ne:   ${r.error.split("\n").filter(Boolean).slice(0, 3).join("\ne:   ").slice(0, 600)}` : "")); }' "$E2E_RESULTS"
  say "artifacts: ${RESULTS_DIR#"$REPO"/}/ (screenshots, results.jsonl, logs)"
fi
say "took $(( $(date +%s) - T0 ))s"
echo "e2e: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
