import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';

// No Docker engine runs here: the compose file and Dockerfile are checked statically.
describe('docker-compose.yml', () => {
  test('runs PostgreSQL and Tether, Tether waits for a healthy database and reads its environment', async () => {
    const compose = parse(await readFile(new URL('../../docker-compose.yml', import.meta.url), 'utf8')) as {
      services: Record<string, { image?: string; build?: string; environment?: Record<string, string>; depends_on?: Record<string, { condition: string }>; healthcheck?: { test: string[] }; volumes?: string[] }>;
    };
    expect(Object.keys(compose.services).sort()).toEqual(['postgres', 'tether']);
    const { postgres, tether } = compose.services;
    expect(postgres!.image).toMatch(/^postgres:/);
    expect(postgres!.healthcheck!.test.join(' ')).toMatch(/pg_isready/);
    expect(tether!.build).toBe('.');
    expect(tether!.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(tether!.environment!.DATABASE_URL).toMatch(/^postgres:\/\/tether:tether@postgres:5432\/tether$/);
    expect(Object.keys(tether!.environment!)).toEqual(expect.arrayContaining(['DATABASE_URL', 'TETHER_ISSUER', 'TETHER_KEY_ENCRYPTION_SECRET']));
    expect(tether!.healthcheck!.test.join(' ')).toMatch(/readyz/);
    expect(tether!.volumes).toEqual(['./deploy:/etc/tether:ro']);
  });

  test('the Dockerfile builds the CLI and starts it with the mounted configuration', async () => {
    const dockerfile = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
    expect(dockerfile).toMatch(/RUN npm run build/);
    expect(dockerfile).toMatch(/COPY migrations/);
    expect(dockerfile).toMatch(/CMD \["start", "--config", "\/etc\/tether\/tether\.config\.yaml"\]/);
  });
});
