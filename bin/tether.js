#!/usr/bin/env node
// The installed `tether` command: runs the compiled CLI (npm run build).
import('../dist/src/main.js');
