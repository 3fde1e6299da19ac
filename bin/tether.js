#!/usr/bin/env node
// The installed `tether` command: runs the compiled CLI (dist/, made by `npm run build`; the published
// package and the container image ship it). In a checkout that was never built, it says so instead of
// printing a module-resolution stack trace.
const main = new URL('../dist/src/main.js', import.meta.url);
try {
  await import(main.href);
} catch (error) {
  // Only main.js itself missing; a missing module further down is a real error and is rethrown.
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || error.url !== main.href) throw error;
  process.stderr.write('tether: the compiled CLI (dist/) is missing: run `npm run build` first, or `npm run tether -- <command>` in a checkout\n');
  process.exit(1);
}
