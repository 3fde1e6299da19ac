// TypeScript ESM tests run through ts-jest under `node --experimental-vm-modules` (see package.json "test").
import { rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Commands the tests spawn under tsx (`node --import tsx src/main.ts`) may run in another folder;
// this keeps them reading tsconfig.json's `paths`, which resolve the workspace packages to their
// sources (an unbuilt checkout has no packages/*/dist).
process.env.TSX_TSCONFIG_PATH ??= fileURLToPath(new URL('./tsconfig.json', import.meta.url));

// One folder per Jest run where test/support/ports.ts claims each port it hands out, so that two
// test files running at once in different workers never get the same one; the workers inherit it.
if (!process.env.TETHER_TEST_PORT_CLAIMS) {
  const claims = path.join(os.tmpdir(), `tether-test-ports-${process.pid}-${Date.now()}`);
  process.env.TETHER_TEST_PORT_CLAIMS = claims;
  process.on('exit', () => rmSync(claims, { recursive: true, force: true }));
}

/** @type {import('jest').Config} */
export default {
  testEnvironment: '<rootDir>/test/support/node_environment.cjs',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // The workspace package from its sources, as tsconfig.json's `paths` resolves it for tsc and tsx.
    '^tether-oauth-resource-server$': '<rootDir>/packages/resource-server/src/index.ts',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json', diagnostics: false }],
  },
  roots: ['<rootDir>/test', '<rootDir>/examples'],
  testMatch: ['**/*.test.ts'],
  // Sized for a loaded 2-core machine where tests start real servers: slow is never red.
  testTimeout: 180_000,
  // Two cores here: two workers keep PGlite (WASM, one thread each) and TLS tests from starving each other.
  maxWorkers: 2,
};
