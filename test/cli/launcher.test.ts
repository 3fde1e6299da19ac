import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

// bin/tether.js, the `tether` command of `npm run dev` and `npx tether`: in a checkout it runs the
// compiled output when it is current and compiles incrementally when src/ changed; on a Node older
// than 22 it runs itself again on Node 24 (bin/run-node.sh).

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
let checkout: string;

async function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, { cwd, env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A minimal checkout: the real launcher and run-node.sh, a one-file src/, the real TypeScript. */
beforeAll(async () => {
  checkout = await mkdtemp(path.join(os.tmpdir(), 'tether-launcher-'));
  await mkdir(path.join(checkout, 'bin'));
  await mkdir(path.join(checkout, 'src', 'cli'), { recursive: true });
  await copyFile(path.join(ROOT, 'bin', 'tether.js'), path.join(checkout, 'bin', 'tether.js'));
  await copyFile(path.join(ROOT, 'bin', 'run-node.sh'), path.join(checkout, 'bin', 'run-node.sh'));
  await symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
  await writeFile(path.join(checkout, 'package.json'), JSON.stringify({ name: 'launcher-checkout', type: 'module' }));
  await writeFile(path.join(checkout, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2023', module: 'NodeNext', moduleResolution: 'NodeNext', rootDir: '.', outDir: 'dist', strict: true, types: ['node'], skipLibCheck: true },
  }));
  await writeFile(path.join(checkout, 'tsconfig.build.json'), JSON.stringify({ extends: './tsconfig.json', include: ['src'] }));
  await writeFile(path.join(checkout, 'src', 'cli', 'greeting.ts'), 'export const greeting: string = \'first\';\n');
  await writeFile(path.join(checkout, 'src', 'main.ts'), 'import { greeting } from \'./cli/greeting.js\';\nconsole.log(`${greeting} on node ${process.versions.node} ${process.argv.slice(2).join(\' \')}`);\n');
});

afterAll(async () => {
  await rm(checkout, { recursive: true, force: true });
});

const COMPILING = 'tether: compiling what changed in tether-oauth (tsc --incremental) ...\n';

describe('bin/tether.js in a checkout', () => {
  test('compiles when dist/ is missing, runs the compiled output as it is once current, recompiles what changed', async () => {
    const first = await run(process.execPath, ['bin/tether.js', 'dev', '--x'], checkout);
    expect(first).toEqual({ code: 0, stdout: `first on node ${process.versions.node} dev --x\n`, stderr: COMPILING });

    const current = await run(process.execPath, ['bin/tether.js', 'dev'], checkout);
    expect(current).toEqual({ code: 0, stdout: `first on node ${process.versions.node} dev\n`, stderr: '' });

    // A changed source: compiled before it runs; then current again.
    await writeFile(path.join(checkout, 'src', 'cli', 'greeting.ts'), 'export const greeting: string = \'second\';\n');
    const later = new Date(Date.now() + 2000);
    await utimes(path.join(checkout, 'src', 'cli', 'greeting.ts'), later, later);
    expect(await run(process.execPath, ['bin/tether.js'], checkout)).toEqual({ code: 0, stdout: `second on node ${process.versions.node} \n`, stderr: COMPILING });
    expect((await run(process.execPath, ['bin/tether.js'], checkout)).stderr).toBe('');

    // A file only touched (same content): tsc writes nothing, and the build still counts as current afterwards.
    const touched = new Date(Date.now() + 4000);
    await utimes(path.join(checkout, 'src', 'main.ts'), touched, touched);
    expect((await run(process.execPath, ['bin/tether.js'], checkout)).stderr).toBe(COMPILING);
    expect((await run(process.execPath, ['bin/tether.js'], checkout)).stderr).toBe('');
  }, 180_000);

  test('a type error is shown, and what tsc emitted still runs', async () => {
    await writeFile(path.join(checkout, 'src', 'cli', 'greeting.ts'), 'export const greeting: number = \'typed wrong\';\n');
    const later = new Date(Date.now() + 6000);
    await utimes(path.join(checkout, 'src', 'cli', 'greeting.ts'), later, later);
    const result = await run(process.execPath, ['bin/tether.js'], checkout);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`typed wrong on node ${process.versions.node} \n`);
    expect(result.stderr).toMatch(/error TS2322: Type 'string' is not assignable to type 'number'/);
    expect(result.stderr).toContain('tether: type errors above; running the compiled output anyway\n');
  }, 120_000);
});

/** The machine's own node, when it is older than 22 (this project's machines have Node 20 in /usr/bin). */
function oldSystemNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    try {
      const major = Number(execFileSync(candidate, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).trim());
      if (major < 22) return candidate;
    } catch {
      // not there
    }
  }
  return undefined;
}

describe('on an older Node', () => {
  test('bin/tether.js runs itself again on Node 24 through bin/run-node.sh', async () => {
    // This project's machines (and so CI) have Node 20 in /usr/bin; elsewhere there is nothing old to run it with.
    const oldNode = oldSystemNode();
    if (oldNode === undefined) return;
    const env = { ...process.env, PATH: `${path.dirname(oldNode)}:/bin` };
    const result = await run(oldNode, ['bin/tether.js', 'start'], checkout, env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^typed wrong on node (2[2-9]|[3-9]\d)\.\d+\.\d+ start\n$/);
  }, 120_000);
});

describe('npx tether in this checkout', () => {
  test('is the checkout\'s own command (linked by npm\'s prepare step), not a registry package', async () => {
    const manifest = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await run('npx', ['--no-install', 'tether', '--version'], ROOT);
    expect(result).toMatchObject({ code: 0, stdout: `${manifest.version}\n` });
  }, 120_000);
});
