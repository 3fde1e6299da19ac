import { execFileSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { loadConfigFile } from '../../src/config/load_config.js';
import { dockerignoreFilter, parseDockerfile, type Instruction, type Stage } from './dockerfile.js';

// No Docker engine runs here: the compose file, the Dockerfile, .dockerignore and deploy/ are checked
// statically; dockerfile_replay.test.ts builds and runs what they describe.

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const CONFIG_IN_CONTAINER = '/etc/tether/tether.config.yaml';

interface ComposeService {
  image?: string;
  build?: string;
  restart?: string;
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  volumes?: string[];
  ports?: string[];
}

async function readCompose(): Promise<Record<string, ComposeService>> {
  return (parse(await readFile(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, ComposeService> }).services;
}

async function readStages(): Promise<Stage[]> {
  return parseDockerfile(await readFile(path.join(ROOT, 'Dockerfile'), 'utf8'));
}

function instructionsOf<K extends Instruction['kind']>(stage: Stage, kind: K): Extract<Instruction, { kind: K }>[] {
  return stage.instructions.filter((instruction): instruction is Extract<Instruction, { kind: K }> => instruction.kind === kind);
}

async function filesBelow(folder: string): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, folder), { withFileTypes: true, recursive: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

describe('docker-compose.yml', () => {
  test('runs PostgreSQL and Tether; Tether waits for a healthy database, restarts unless stopped, and reads its environment', async () => {
    const services = await readCompose();
    expect(Object.keys(services).sort()).toEqual(['postgres', 'tether']);
    const { postgres, tether } = services;
    expect(postgres!.image).toMatch(/^postgres:/);
    expect(postgres!.healthcheck!.test.join(' ')).toMatch(/pg_isready/);
    expect(postgres!.restart).toBe('unless-stopped');
    expect(tether!.build).toBe('.');
    expect(tether!.restart).toBe('unless-stopped');
    expect(tether!.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(tether!.environment!.DATABASE_URL).toMatch(/^postgres:\/\/tether:tether@postgres:5432\/tether$/);
    // Changed deliberately: no TETHER_ISSUER any more. The issuer is deploy/tether.config.yaml's, the
    // host `tether pki init` issues the server certificate for; an override here would contradict it.
    expect(Object.keys(tether!.environment!).sort()).toEqual(['DATABASE_URL', 'TETHER_KEY_ENCRYPTION_SECRET']);
    expect(tether!.environment!.TETHER_KEY_ENCRYPTION_SECRET).toMatch(/^\$\{TETHER_KEY_ENCRYPTION_SECRET:\?.+\}$/);
    // The image's HEALTHCHECK (tether health) applies: compose neither replaces nor disables it.
    expect(tether!.healthcheck).toBeUndefined();
    // Changed deliberately from ./deploy:/etc/tether:ro: deploy/pki/ (the CA's and the clients' keys) is not mounted.
    expect(tether!.volumes).toEqual(['./deploy/tether.config.yaml:/etc/tether/tether.config.yaml:ro', './deploy/tls:/etc/tether/tls:ro']);
    expect(tether!.ports).toEqual(['8443:8443']);
  });
});

describe('Dockerfile', () => {
  test('a runtime stage of production dependencies and compiled output, run as the node user, health-checked with tether health', async () => {
    const stages = await readStages();
    const runtime = stages.at(-1)!;
    expect(runtime.name).toBeUndefined();
    // Nothing is installed or compiled in the runtime stage: it only copies.
    expect(instructionsOf(runtime, 'RUN')).toEqual([]);
    const copies = instructionsOf(runtime, 'COPY');
    const stageOf = (from: string | undefined) => stages.find((stage) => stage.name === from);
    const copiedFrom = (destination: string) => copies.find((copy) => copy.destination === destination);
    // node_modules from a stage that installs production dependencies only; dist/ from the one that runs `npm run build`.
    const modules = copiedFrom('./node_modules')!;
    const dist = copiedFrom('./dist')!;
    // The workspace link npm makes for the verifier package is replaced by the built package (issue 14).
    expect(instructionsOf(stageOf(modules.from)!, 'RUN').map((run) => run.command)).toEqual(['npm ci --omit=dev --no-audit --no-fund', 'rm node_modules/tether-oauth-resource-server']);
    expect(instructionsOf(stageOf(modules.from)!, 'COPY').filter((copy) => copy.from !== undefined).map((copy) => [copy.from, copy.sources, copy.destination])).toEqual([
      [dist.from, ['/app/packages/resource-server/package.json'], './node_modules/tether-oauth-resource-server/'],
      [dist.from, ['/app/packages/resource-server/dist'], './node_modules/tether-oauth-resource-server/dist'],
    ]);
    expect(instructionsOf(stageOf(dist.from)!, 'RUN').map((run) => run.command)).toEqual(['npm ci --no-audit --no-fund', 'npm run build']);
    expect(copies.filter((copy) => copy.from === undefined).map((copy) => copy.sources)).toEqual([['migrations'], ['bin/tether.js']]);
    expect(instructionsOf(runtime, 'ENV')).toEqual([{ kind: 'ENV', variables: { NODE_ENV: 'production' } }]);
    expect(instructionsOf(runtime, 'USER')).toEqual([{ kind: 'USER', user: 'node' }]);
    expect(instructionsOf(runtime, 'EXPOSE')).toEqual([{ kind: 'EXPOSE', ports: ['8443'] }]);
    expect(instructionsOf(runtime, 'ENTRYPOINT')).toEqual([{ kind: 'ENTRYPOINT', command: ['node', 'bin/tether.js'] }]);
    expect(instructionsOf(runtime, 'CMD')).toEqual([{ kind: 'CMD', command: ['start', '--config', CONFIG_IN_CONTAINER] }]);
    expect(instructionsOf(runtime, 'HEALTHCHECK').map((check) => check.command)).toEqual([['node', 'bin/tether.js', 'health', '--config', CONFIG_IN_CONTAINER]]);
  });

  test('.dockerignore: the build context holds what the Dockerfile copies, and no private keys, local state or dependencies', async () => {
    const included = dockerignoreFilter(await readFile(path.join(ROOT, '.dockerignore'), 'utf8'));
    const contextSources = (await readStages()).flatMap((stage) => instructionsOf(stage, 'COPY').filter((copy) => copy.from === undefined).flatMap((copy) => copy.sources));
    // The verifier package (issue 14): its manifest, build configuration and sources, built with the server.
    const verifierPackage = ['packages/resource-server/package.json', 'packages/resource-server/src', 'packages/resource-server/tsconfig.build.json'];
    expect(contextSources.sort()).toEqual(['bin/tether.js', 'migrations', 'package-lock.json', 'package-lock.json', 'package.json', 'package.json', ...verifierPackage, 'src', 'tsconfig.build.json', 'tsconfig.json']);
    const folders = ['src', 'migrations', 'packages/resource-server/src'];
    const copied = [...contextSources.filter((source) => !folders.includes(source)), ...(await Promise.all(folders.map(filesBelow))).flat()];
    expect(copied.filter((file) => !included(file))).toEqual([]);
    const never = [
      'node_modules/koa/package.json', '.git/config', '.git/objects/pack/x.pack', '.tether/pki/ca.key.pem', '.tether/db/PG_VERSION',
      'dist/src/main.js', 'coverage/lcov.info', 'bench/results/latest.json', 'deploy/pki/ca.key.pem', 'deploy/pki/clients/orders-worker.key.pem',
      'deploy/tls/server.key.pem', 'deploy/tether.config.yaml', '.env', 'test/deploy/docker_compose.test.ts', 'bin/run-node.sh', 'npm-debug.log',
      // Inside what is let back in, too.
      'src/node_modules/x.js', 'src/.tether/pki/ca.key.pem', 'src/leaked.key.pem', 'src/server.pem', 'migrations/.env',
      'packages/resource-server/dist/index.js', 'packages/resource-server/node_modules/jose/package.json', 'packages/client/src/index.ts',
    ];
    expect(never.filter(included)).toEqual([]);
  });
});

describe('deploy/', () => {
  test('tether.config.yaml is valid, listens on every interface of the container, and names its server files under the mounted tls/ folder', async () => {
    const config = await loadConfigFile(path.join(ROOT, 'deploy', 'tether.config.yaml'), {});
    const https = config.listeners.https!;
    expect({ host: https.host, port: https.port, http: config.listeners.http }).toEqual({ host: '0.0.0.0', port: 8443, http: undefined });
    const tls = path.join(ROOT, 'deploy', 'tls');
    expect([https.certFile, https.keyFile, https.clientCaFile]).toEqual([path.join(tls, 'server.pem'), path.join(tls, 'server.key.pem'), path.join(tls, 'ca.pem')]);
    expect(config.clients.filter((client) => client.auth.method === 'tls_client_auth').map((client) => client.auth)).toEqual([{ method: 'tls_client_auth', subjectDn: 'CN=orders-worker' }]);
  });

  test('only the configuration is committed; the PKI folders tether pki init makes are ignored', () => {
    expect(execFileSync('git', ['ls-files', 'deploy'], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n')).toEqual(['deploy/tether.config.yaml']);
    const ignored = execFileSync('git', ['check-ignore', '--no-index', 'deploy/pki/ca.key.pem', 'deploy/tls/server.key.pem', '.env'], { cwd: ROOT, encoding: 'utf8' });
    expect(ignored.trim().split('\n')).toEqual(['deploy/pki/ca.key.pem', 'deploy/tls/server.key.pem', '.env']);
  });
});
