/**
 * PGlite's WebAssembly module, compiled once per process and shared as an immutable value
 * (`WebAssembly.Module`). Compiling its 9 MB module costs ~80–100 ms of CPU; `WebAssembly.compile`
 * does it on V8's background threads, so a caller that starts it early (the CLI, before it imports
 * the rest of itself; the harness, before it makes its certificates) gets it while doing other work.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { PGliteOptions } from '@electric-sql/pglite';

export type PgliteWasmModule = NonNullable<PGliteOptions['pgliteWasmModule']>;
// The project compiles without the DOM library, which is where TypeScript declares WebAssembly.
const { WebAssembly: wasm } = globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<PgliteWasmModule> } };

let compiled: Promise<PgliteWasmModule | undefined> | undefined;

/**
 * The compiled module (starting the compile on the first call), or undefined when it could not be
 * compiled here: PGlite then compiles it itself, so a failure only costs the head start, and the next
 * call tries again.
 */
export function compiledPgliteModule(): Promise<PgliteWasmModule | undefined> {
  compiled ??= compilePgliteModule();
  return compiled;
}

async function compilePgliteModule(): Promise<PgliteWasmModule | undefined> {
  try {
    const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
    return await wasm.compile(await readFile(join(dirname(entry), 'pglite.wasm')));
  } catch {
    compiled = undefined;
    return undefined;
  }
}
