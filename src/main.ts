import { enableCompileCache } from 'node:module';

// Node's on-disk compile cache (Node ≥ 22.1): the second and later starts of `tether` reuse the
// bytecode of every module they load instead of compiling oidc-provider, knex, PGlite's glue and
// our own code again (docs/benchmarks.md, "Cold start: the compile cache"). A cache folder that
// cannot be written only costs the saving; NODE_DISABLE_COMPILE_CACHE=1 turns it off. The CLI is
// imported after it is on: static imports would load before this line runs.
enableCompileCache();

// `tether dev` opens the embedded PGlite: its WebAssembly compiles on V8's background threads while
// the CLI's modules load on this one (storage/pglite_wasm.ts), instead of after them.
if (process.argv[2] === 'dev' && !process.env.DATABASE_URL) {
  const { compiledPgliteModule } = await import('./storage/pglite_wasm.js');
  void compiledPgliteModule();
}
const { main } = await import('./cli/program.js');

await main(process.argv);
