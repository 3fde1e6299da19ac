/**
 * `npm run bench` — Tether's throughput, latency, start-up time and inventory queries, each measured
 * side by side with a baseline in the same run on the same machine, and judged against the goals of
 * issue 15 as ratios (docs/benchmarks.md). This file is the only one that does anything when loaded.
 *
 *   npm run bench                          every section: 10 s runs, 5 interleaved rounds
 *   npm run bench -- load inventory        some sections: load | verifier | coldstart | inventory
 *   npm run bench -- --quick               smoke run (2 s runs, 1 round)
 *   npm run bench -- load --subjects bare,tether-pg      only these load subjects
 *   npm run bench -- load --subjects tether-pg --profile tether-pg   node --cpu-prof on that server
 *   npm run bench -- --duration 15 --rounds 7 --inventory-rows 200000 --no-pin
 */
import { runBench } from './main.js';
import { parseOptions } from './lib/options.js';

runBench(parseOptions(process.argv.slice(2))).catch((error: Error) => {
  process.stderr.write(`[bench] failed: ${error.stack ?? String(error)}\n`);
  process.exit(1);
});
