#!/bin/sh
# Runs node with the given arguments on a Node.js >= 22 (oidc-provider 9 needs it).
# When the machine's node is older, a Node 24 from the npm registry package `node` is installed once
# into a cache folder and used instead, so `npm run dev` and `npm test` work on any machine with npm.
set -e
cache="${TETHER_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether-node}"
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 22 ]; then
  if [ ! -x "$cache/node_modules/.bin/node" ]; then
    echo "tether: node $(node --version 2>/dev/null || echo missing) is older than 22; installing node@24 into $cache" >&2
    npm install --silent --no-audit --no-fund --prefix "$cache" node@24 >&2
  fi
  PATH="$cache/node_modules/.bin:$PATH"
  export PATH
fi
exec node "$@"
