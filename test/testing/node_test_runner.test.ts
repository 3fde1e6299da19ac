// The CI runs only `npm test`: this runs the node:test smoke test of the harness in a child `node --test`.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));

test('startTether works under node:test (node --test test/testing/node_test/*.node.ts)', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/testing/node_test/start_tether.node.ts'], {
    cwd: root,
    // jest's --experimental-vm-modules is not needed there.
    env: { ...process.env, NODE_OPTIONS: '' },
    timeout: 150_000,
  });
  expect(stdout).toMatch(/# pass 2/);
  expect(stdout).toMatch(/# fail 0/);
});
