import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import knexFactory, { type Knex } from 'knex';
import { Agent, fetch } from 'undici';
import { parse as parseYaml } from 'yaml';
import { createEmptyPostgresDatabase } from '../support/database.js';
import { dockerignoreFilter, parseDockerfile, replayDockerfile, type ReplayedImage } from './dockerfile.js';
import { freePort } from '../support/ports.js';

// No Docker engine runs here. This test builds what the Dockerfile builds by replaying the
// Dockerfile's own instructions (test/deploy/dockerfile.ts), then runs the replayed image's
// ENTRYPOINT + CMD as the image's USER, with docker-compose.yml's environment and mounts pointed at
// a deploy/ folder made by `tether pki init` from the committed deploy/tether.config.yaml, against a
// fresh PostgreSQL database — and gets a certificate-bound token from it over mTLS.
//
// It installs and compiles everything (minutes), so it runs once per CI run: in the PostgreSQL pass.

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const DATABASE_SERVER = process.env.DATABASE_URL;
/** The official node images' unprivileged user. */
const IMAGE_USERS: Record<string, { uid: number; gid: number }> = { node: { uid: 1000, gid: 1000 } };
const RUN_TIMEOUT_MS = 15 * 60_000;
const START_DEADLINE_MS = 120_000;

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(command: string[], options: { cwd: string; env: Record<string, string>; user?: { uid: number; gid: number } }): Running {
  const [file, ...args] = command;
  const child = spawn(file!, args, { cwd: options.cwd, env: options.env, uid: options.user?.uid, gid: options.user?.gid, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => output, exited };
}

async function runToEnd(command: string[], options: Parameters<typeof start>[1]): Promise<{ code: number | null; output: string }> {
  const running = start(command, options);
  const { code } = await running.exited;
  return { code, output: running.output() };
}


async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}

/** Every installed package folder below `app`, as the lock file names them (node_modules/a/node_modules/b). */
async function installedPackages(app: string, prefix = ''): Promise<string[]> {
  const folder = path.join(app, prefix, 'node_modules');
  const entries = await readdir(folder).catch(() => [] as string[]);
  const found: string[] = [];
  for (const entry of entries.filter((name) => !name.startsWith('.'))) {
    const names = entry.startsWith('@') ? (await readdir(path.join(folder, entry))).map((name) => `${entry}/${name}`) : [entry];
    for (const name of names) {
      const packagePath = path.posix.join(prefix, 'node_modules', name);
      found.push(packagePath, ...(await installedPackages(app, packagePath)));
    }
  }
  return found;
}

/** `${NAME}`, `${NAME:-default}` and `${NAME:?message}` as docker compose interpolates them. */
function interpolate(value: string, variables: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}/g, (_, name: string, operator?: string, operand?: string) => {
    const given = variables[name];
    if (given !== undefined && given !== '') return given;
    if (operator === '-') return operand ?? '';
    throw new Error(`docker compose would refuse to start: ${name}: ${operand ?? 'not set'}`);
  });
}

function thumbprintOfPem(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');
}

interface ComposeService {
  build?: string;
  restart?: string;
  environment: Record<string, string>;
  volumes: string[];
  ports: string[];
  healthcheck?: unknown;
}

describe('the Dockerfile, replayed without Docker', () => {
  test('builds a runtime with only production packages and the compiled CLI, which serves a certificate-bound token on PostgreSQL with the deploy/ example', async () => {
    if (!DATABASE_SERVER) {
      console.log('dockerfile replay: runs in the PostgreSQL pass (DATABASE_URL set), once per CI run; nothing to do on PGlite');
      return;
    }
    const stages = parseDockerfile(await readFile(path.join(ROOT, 'Dockerfile'), 'utf8'));
    const contextFilter = dockerignoreFilter(await readFile(path.join(ROOT, '.dockerignore'), 'utf8'));
    const compose = parseYaml(await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService> };
    const service = compose.services.tether!;
    expect(service.build).toBe('.');

    // The base images' Node is the one replaying them: same major version, or the replay proves little.
    const stageNames = new Set(stages.flatMap((stage) => [String(stage.index), ...(stage.name ? [stage.name] : [])]));
    for (const stage of stages.filter((candidate) => !stageNames.has(candidate.base))) {
      expect(stage.base).toMatch(new RegExp(`^node:${process.versions.node.split('.')[0]}-`));
    }

    const scratch = await mkdtemp(path.join(os.tmpdir(), 'tether-dockerfile-'));
    // The image's user must be able to reach the runtime folder and the deploy/ folder inside it.
    await chmod(scratch, 0o755);
    const database = await createEmptyPostgresDatabase(DATABASE_SERVER);
    let server: Running | undefined;
    let agent: Agent | undefined;
    let knex: Knex | undefined;
    try {
      // 1. Build: the Dockerfile's stages, each in its own folder, with the npm cache the outer `npm ci` warmed.
      const npmCache = execFileSync('npm', ['config', 'get', 'cache'], { cwd: ROOT, encoding: 'utf8' }).trim();
      const steps: string[] = [];
      const image: ReplayedImage = await replayDockerfile({
        stages,
        context: ROOT,
        contextFilter,
        scratch,
        runEnv: {
          PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`,
          HOME: os.homedir(),
          npm_config_cache: npmCache,
          npm_config_prefer_offline: 'true',
          npm_config_update_notifier: 'false',
        },
        onStep: (step) => steps.push(step),
        runTimeoutMs: RUN_TIMEOUT_MS,
      });
      expect(steps.filter((step) => step.includes('RUN ')).length).toBeGreaterThanOrEqual(2);

      // 2. What the image holds: the compiled CLI, its migrations, production packages; nothing else.
      const app = image.workdir;
      expect((await readdir(app)).sort()).toEqual(['bin', 'dist', 'migrations', 'node_modules', 'package.json']);
      expect(await readdir(path.join(app, 'bin'))).toEqual(['tether.js']);
      expect(await exists(path.join(app, 'dist', 'src', 'main.js'))).toBe(true);
      expect((await readdir(path.join(app, 'migrations'))).sort()).toEqual((await readdir(path.join(ROOT, 'migrations'))).sort());
      const lock = JSON.parse(await readFile(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
      const installed = await installedPackages(app);
      const developmentTools = ['tsx', 'esbuild', '@esbuild/', 'jest', 'ts-jest', 'typescript', '@types/', 'eslint'];
      expect(installed.filter((name) => developmentTools.some((tool) => {
        const packageName = name.slice(name.lastIndexOf('node_modules/') + 'node_modules/'.length);
        return tool.endsWith('/') ? packageName.startsWith(tool) : packageName === tool;
      }))).toEqual([]);
      expect(await readdir(path.join(app, 'node_modules'))).not.toEqual(expect.arrayContaining(['tsx', 'esbuild', '@esbuild', 'jest', 'typescript']));
      expect(installed).toEqual(expect.arrayContaining(['node_modules/oidc-provider', 'node_modules/pg', 'node_modules/@electric-sql/pglite']));
      expect(installed.filter((name) => lock.packages[name] === undefined || lock.packages[name].dev === true)).toEqual([]);

      // 3. deploy/: the committed configuration, and the PKI made for it by the image's own CLI.
      const deploy = path.join(scratch, 'deploy');
      await mkdir(deploy, { mode: 0o755 });
      await copyFile(path.join(ROOT, 'deploy', 'tether.config.yaml'), path.join(deploy, 'tether.config.yaml'));
      await chmod(path.join(deploy, 'tether.config.yaml'), 0o644);
      const user = IMAGE_USERS[image.user];
      expect(user).toBeDefined();
      const nodeBin = path.join(scratch, 'node-bin');
      await mkdir(nodeBin, { mode: 0o755 });
      // The image's node for the image's user: this machine's node lives under root's home.
      const realNode = await realpath(process.execPath);
      await link(realNode, path.join(nodeBin, 'node')).catch(() => copyFile(realNode, path.join(nodeBin, 'node')));
      await chmod(path.join(nodeBin, 'node'), 0o755);
      const basePath = `${nodeBin}${path.delimiter}/usr/local/bin${path.delimiter}/usr/bin${path.delimiter}/bin`;

      const pkiInit = await runToEnd(['node', 'bin/tether.js', 'pki', 'init', '--config', path.join(deploy, 'tether.config.yaml'), '--owner', `${user!.uid}:${user!.gid}`], {
        cwd: app, env: { PATH: basePath, HOME: os.homedir(), ...image.env },
      });
      expect({ code: pkiInit.code, output: pkiInit.output }).toEqual({ code: 0, output: expect.stringContaining('The server reads') });
      const raw = parseYaml(await readFile(path.join(deploy, 'tether.config.yaml'), 'utf8')) as {
        issuer: string;
        listeners: { https: { host: string; port: number; certFile: string; keyFile: string; clientCaFile: string }; http?: unknown };
        clients: { id: string; resources: Record<string, string[]>; defaultResource?: string }[];
      };
      const keyFile = path.join(deploy, raw.listeners.https.keyFile);
      const keyStat = await stat(keyFile);
      expect({ mode: keyStat.mode & 0o777, uid: keyStat.uid, gid: keyStat.gid }).toEqual({ mode: 0o600, uid: user!.uid, gid: user!.gid });

      // 4. docker-compose.yml's mounts: container path → host path in the scratch deploy/.
      const mounts = service.volumes.map((volume) => {
        const [source, target, mode] = volume.split(':');
        expect({ volume, source: source!.startsWith('./deploy/'), mode }).toEqual({ volume, source: true, mode: 'ro' });
        return { target: target!, host: path.join(deploy, path.relative('./deploy', source!)) };
      });
      const hostPathOf = (containerPath: string): string | undefined => {
        const mount = mounts.find(({ target }) => containerPath === target || containerPath.startsWith(`${target}/`));
        return mount && path.join(mount.host, path.posix.relative(mount.target, containerPath));
      };
      const configIndex = image.cmd.indexOf('--config');
      const containerConfig = image.cmd[configIndex + 1]!;
      expect(hostPathOf(containerConfig)).toBe(path.join(deploy, 'tether.config.yaml'));
      // Every file the configuration names is mounted where the container resolves it; the private PKI is not mounted.
      for (const file of [raw.listeners.https.certFile, raw.listeners.https.keyFile, raw.listeners.https.clientCaFile]) {
        expect(hostPathOf(path.posix.resolve(path.posix.dirname(containerConfig), file))).toBe(path.join(deploy, file));
      }
      expect(mounts.filter(({ host }) => path.join(deploy, 'pki').startsWith(host) || host.startsWith(path.join(deploy, 'pki')))).toEqual([]);
      // Published ports reach the listener: it binds every interface, on a port the image EXPOSEs and compose publishes.
      expect(raw.listeners.https.host).toBe('0.0.0.0');
      expect(image.exposed).toContain(String(raw.listeners.https.port));
      expect(service.ports).toContain(`${raw.listeners.https.port}:${raw.listeners.https.port}`);

      // 5. The container: ENTRYPOINT + CMD as USER, with compose's environment (DATABASE_URL → the test database).
      expect(new URL(service.environment.DATABASE_URL!).hostname).toBe('postgres');
      const composeEnv = Object.fromEntries(Object.entries(service.environment).map(([name, value]) => [
        name, name === 'DATABASE_URL' ? database.url : interpolate(String(value), { TETHER_KEY_ENCRYPTION_SECRET: randomBytes(32).toString('hex') }),
      ]));
      const port = await freePort();
      const containerEnv = {
        PATH: basePath, HOME: scratch, ...image.env, ...composeEnv,
        // This machine allows loopback listeners only: the same configuration, its host and port moved by the environment.
        TETHER_HTTPS_HOST: '127.0.0.1', TETHER_HTTPS_PORT: String(port),
      };
      const asContainer = (command: string[]) => ({
        command: command.map((argument) => (argument.startsWith('/') ? hostPathOf(argument) ?? argument : argument)),
        options: { cwd: app, env: containerEnv, user: process.getuid?.() === 0 ? user : undefined },
      });
      const main = asContainer([...image.entrypoint, ...image.cmd]);
      server = start(main.command, main.options);
      const origin = `https://127.0.0.1:${port}`;
      const ca = await readFile(path.join(deploy, raw.listeners.https.clientCaFile), 'utf8');
      const client = raw.clients[0]!;
      const clientCertificate = await readFile(path.join(deploy, 'pki', 'clients', `${client.id}.pem`), 'utf8');
      agent = new Agent({ connect: { ca, servername: new URL(raw.issuer).hostname, cert: clientCertificate, key: await readFile(path.join(deploy, 'pki', 'clients', `${client.id}.key.pem`), 'utf8') } });
      const deadline = Date.now() + START_DEADLINE_MS;
      for (let attempt = 0; ; attempt += 1) {
        if (server.child.exitCode !== null) throw new Error(`the replayed image exited with ${server.child.exitCode}:\n${server.output()}`);
        const ready = await fetch(`${origin}/readyz`, { dispatcher: agent }).then((response) => response.status, () => 0);
        if (ready === 200) break;
        if (Date.now() > deadline || attempt > 2000) throw new Error(`not ready within ${START_DEADLINE_MS} ms (last ${ready}):\n${server.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }

      // 6. A token over mTLS, as the README's curl asks for it.
      const resource = client.defaultResource ?? Object.keys(client.resources)[0]!;
      const scope = client.resources[resource]![0]!;
      const request = { grant_type: 'client_credentials', client_id: client.id, resource, scope };
      const response = await fetch(`${origin}/token`, { method: 'POST', body: new URLSearchParams(request), dispatcher: agent });
      const body = await response.json() as { access_token: string; token_type: string; scope: string };
      expect({ status: response.status, token_type: body.token_type, scope: body.scope }).toEqual({ status: 200, token_type: 'Bearer', scope });
      const claims = decodeJwt(body.access_token);
      const thumbprint = thumbprintOfPem(clientCertificate);
      expect({ iss: claims.iss, aud: claims.aud, client_id: claims.client_id, cnf: claims.cnf }).toEqual({
        iss: raw.issuer, aud: resource, client_id: client.id, cnf: { 'x5t#S256': thumbprint },
      });
      knex = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 1 } });
      const recorded = await knex('issued_tokens').select('client_id', 'resource', 'binding_method', 'binding_thumbprint');
      expect(recorded).toEqual([{ client_id: client.id, resource, binding_method: 'mtls', binding_thumbprint: thumbprint }]);

      // The same request without the client certificate is refused: the deploy/ PKI is what authenticates.
      const anonymous = new Agent({ connect: { ca, servername: new URL(raw.issuer).hostname } });
      try {
        const refused = await fetch(`${origin}/token`, { method: 'POST', body: new URLSearchParams(request), dispatcher: anonymous });
        expect({ status: refused.status, error: ((await refused.json()) as { error: string }).error }).toEqual({ status: 401, error: 'invalid_client' });
      } finally {
        await anonymous.close();
      }

      // 7. The image's HEALTHCHECK, run as the container runs it, answers healthy for the configured HTTPS listener.
      expect(image.healthcheck).toBeDefined();
      const health = asContainer(image.healthcheck!);
      const healthy = await runToEnd(health.command, health.options);
      expect({ code: healthy.code, output: healthy.output.trim() }).toEqual({ code: 0, output: `ready      ${origin}/readyz  200 {"status":"ready"}` });

      // 8. SIGTERM (docker stop) ends it cleanly; the health check then says not ready.
      server.child.kill('SIGTERM');
      expect(await server.exited).toEqual({ code: 0, signal: null });
      const stopped = await runToEnd(health.command, health.options);
      expect({ code: stopped.code, output: stopped.output.trim() }).toEqual({ code: 1, output: `NOT READY  ${origin}/readyz  ECONNREFUSED` });
    } finally {
      if (server && server.child.exitCode === null && server.child.signalCode === null) {
        server.child.kill('SIGKILL');
        await server.exited;
      }
      await agent?.close();
      await knex?.destroy();
      await database.drop();
      await rm(scratch, { recursive: true, force: true });
    }
  }, 40 * 60_000);
});
