import { Command } from 'commander';
import type { Knex } from 'knex';
import { CommandError } from '../../src/cli/cli_errors.js';
import { databaseKeysRunner, registerKeysCommands, type WithDatabase } from '../../src/cli/keys_commands.js';
import { ConfigError, parseConfig } from '../../src/config/load_config.js';
import type { TetherConfig } from '../../src/config/schema.js';
import { listSigningKeys, loadSigningKeys } from '../../src/keys/signing_keys.js';
import { Captured } from '../cli/cli_support.js';
import { openTestDatabase } from '../support/database.js';
import { ENCRYPTION_SECRET, fleetConfig } from './fleet.js';

// `tether keys list|rotate|retire` as an operator runs them, on the database a fleet shares.

let database: Awaited<ReturnType<typeof openTestDatabase>>;
const out = new Captured();

beforeAll(async () => {
  database = await openTestDatabase();
});
afterAll(async () => {
  await database?.close();
});
beforeEach(async () => {
  await database.knex('signing_keys').delete();
  await database.knex('server_secrets').delete();
  out.take();
});
afterEach(() => {
  process.exitCode = undefined;
});

function configWith(signing: Record<string, unknown>): TetherConfig {
  return parseConfig({ ...fleetConfig({ publicationDelay: 600, verifierJwksMaxAge: 600, encryptionSecret: undefined, ...signing }), issuer: 'https://auth.keys.test' });
}

/**
 * Runs `tether keys …` with `config`; resolves to what it printed and its exit code. A refusal is
 * thrown as a CommandError (runCli prints it as one line on stderr, exit code 1): its message is
 * the text, on "stderr".
 */
async function tether(config: TetherConfig, ...args: string[]): Promise<{ text: string; exitCode: number }> {
  const withDatabase: WithDatabase = (_file, work) => work(database.knex as Knex, config);
  const program = new Command('tether').exitOverride();
  registerKeysCommands(program, databaseKeysRunner(withDatabase, out));
  // process is shared by the test files of one jest worker: an exit code another file left must not count here.
  process.exitCode = undefined;
  try {
    await program.parseAsync(['node', 'tether', 'keys', ...args]);
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    return { text: `${error.message}\n`, exitCode: error.exitCode };
  }
  const exitCode = Number(process.exitCode ?? 0);
  process.exitCode = undefined;
  return { text: out.take(), exitCode };
}

const withSecret = () => configWith({ encryptionSecret: ENCRYPTION_SECRET });

describe('tether keys rotate / list / retire', () => {
  test('rotate stages a key (published now, signing after the delay); list shows every state', async () => {
    const [current] = (await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: ENCRYPTION_SECRET })).jwks.keys;
    const rotated = await tether(withSecret(), 'rotate');
    expect(rotated).toMatchObject({ exitCode: 0 });
    expect(rotated.text).toMatch(/^new ES256 signing key (\S+) is published now and signs from \S+Z \(after the publication delay of 600 s\)\n/);
    expect(rotated.text).toContain(`${current!.kid} signs until then, and stays published for 360 s more (the longest token lifetime + leeway)`);
    expect(rotated.text).toContain('running instances pick this up within seconds; no restart needed');
    const newKid = /signing key (\S+)/.exec(rotated.text)![1]!;

    const listed = await tether(withSecret(), 'list');
    expect(listed.text.split('\n')[0]).toMatch(/^KID\s+ALG\s+STATE\s+SIGNS FROM\s+STOPS SIGNING\s+PUBLISHED UNTIL/);
    expect(listed.text).toMatch(new RegExp(`${newKid}\\s+ES256\\s+staged`));
    expect(listed.text).toMatch(new RegExp(`${current!.kid}\\s+ES256\\s+active`));

    const json = JSON.parse((await tether(withSecret(), 'list', '--json')).text) as Record<string, unknown>[];
    expect(json.map((key) => [key.kid, key.state, key.current])).toEqual([[newKid, 'staged', false], [current!.kid, 'active', true]]);
    // snake_case, as every command's JSON.
    expect(Object.keys(json[0]!)).toEqual(['kid', 'alg', 'state', 'current', 'created_at', 'activated_at', 'retired_at', 'published_until']);
    expect(json[0]).toMatchObject({ alg: 'ES256', activated_at: expect.stringMatching(/Z$/), retired_at: null });

    const rotatedJson = JSON.parse((await tether(withSecret(), 'rotate', '--json')).text) as Record<string, unknown>;
    expect(rotatedJson).toEqual({
      kid: expect.any(String), alg: 'ES256', signs_from: expect.stringMatching(/Z$/), publication_delay_seconds: 600,
      // A second rotation replaces the staged key, which would have signed next.
      replaced: [{ kid: newKid, published_for_seconds_after: 360 }],
    });
  });

  test('retire refuses the key that signs now, saying why and what to do; --force retires it', async () => {
    const [current] = (await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: ENCRYPTION_SECRET })).jwks.keys;
    const refused = await tether(withSecret(), 'retire', current!.kid!);
    expect(refused.exitCode).toBe(1);
    expect(refused.text).toBe(
      `refusing to retire ${current!.kid}: it is the key that signs ES256 tokens now. Run "tether keys rotate": its new key signs after the publication delay ` +
        `and ${current!.kid} retires by itself then, staying published 360 s for the tokens it signed. To stop signing with it at once (a compromised key), ` +
        'add --force: a staged key, or a new one, signs immediately, before every verifier may have fetched it.\n',
    );
    expect((await listSigningKeys(database.knex)).map((key) => key.state)).toEqual(['active']);

    const staged = await tether(withSecret(), 'rotate');
    const stagedKid = /signing key (\S+)/.exec(staged.text)![1]!;
    const refusedWithSuccessor = await tether(withSecret(), 'retire', current!.kid!);
    expect(refusedWithSuccessor.text).toMatch(new RegExp(`${stagedKid} is staged and signs from \\S+Z; ${current!.kid} retires by itself then\\.`));

    const forced = await tether(withSecret(), 'retire', current!.kid!, '--force');
    expect(forced.exitCode).toBe(0);
    expect(forced.text).toMatch(new RegExp(`^retired ${current!.kid}: it no longer signs; it is published until \\S+Z\\n${stagedKid} \\(staged\\) signs from now\\n$`));
    expect(Object.fromEntries((await listSigningKeys(database.knex)).map((key) => [key.kid, key.state]))).toEqual({ [stagedKid]: 'active', [current!.kid!]: 'retiring' });

    expect(await tether(withSecret(), 'retire', current!.kid!)).toEqual({ text: `${current!.kid} is already retired\n`, exitCode: 0 });
    expect(JSON.parse((await tether(withSecret(), 'retire', current!.kid!, '--json')).text)).toEqual({ kid: current!.kid, retired: true, already_retired: true });
    expect(await tether(withSecret(), 'retire', 'no-such-kid')).toEqual({ text: 'no signing key no-such-kid\n', exitCode: 1 });
  });

  test('a kid that begins with "-" is a kid; a mistyped option is refused, not ignored', async () => {
    const hint = ' (if "-no-such-kid" was meant as an option, it is not one of this command\'s: --help lists them)';
    expect(await tether(withSecret(), 'retire', '-no-such-kid')).toEqual({ text: `no signing key -no-such-kid${hint}\n`, exitCode: 1 });
    expect(await tether(withSecret(), 'retire', '--', '-no-such-kid')).toEqual({ text: `no signing key -no-such-kid${hint}\n`, exitCode: 1 });
    await expect(tether(withSecret(), 'retire', 'some-kid', '--forse')).rejects.toThrow(/too many arguments/);
  });

  test('retire refuses the last key of an algorithm; --force with --withdraw-now removes it from the JWKS at once', async () => {
    const [es256] = (await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: ENCRYPTION_SECRET })).jwks.keys;
    await loadSigningKeys(database.knex, { algorithm: 'EdDSA', encryptionSecret: ENCRYPTION_SECRET });
    const edDsaFleet = configWith({ encryptionSecret: ENCRYPTION_SECRET, algorithm: 'EdDSA' });
    const refused = await tether(edDsaFleet, 'retire', es256!.kid!);
    expect(refused.exitCode).toBe(1);
    expect(refused.text).toBe(
      `refusing to retire ${es256!.kid}: it is the last ES256 key; instances configured with signing.algorithm ES256 would have none to sign with. ` +
        'If no instance signs ES256 any more, add --force (it stays published 360 s for the tokens it signed).\n',
    );
    const forced = await tether(edDsaFleet, 'retire', es256!.kid!, '--force', '--withdraw-now');
    expect(forced.exitCode).toBe(0);
    expect((await listSigningKeys(database.knex)).find((key) => key.kid === es256!.kid)?.state).toBe('retired');
  });

  test('rotate --immediately: the new key signs at once', async () => {
    await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: ENCRYPTION_SECRET });
    const { text } = await tether(withSecret(), 'rotate', '--immediately');
    expect(text).toMatch(/^new ES256 signing key \S+ signs now \(no publication delay/);
    expect((await listSigningKeys(database.knex)).map((key) => key.state)).toEqual(['active', 'retiring']);
  });
});

describe('tether keys rotate without the fleet\'s secret', () => {
  test('refused when the stored keys are encrypted: one line naming the problem, no key added', async () => {
    await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: ENCRYPTION_SECRET });
    const before = await listSigningKeys(database.knex);
    const error = await tether(configWith({}), 'rotate').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/^signing keys: refusing to store a key in plaintext: the stored keys are encrypted at rest \(signing key \S+\); set TETHER_KEY_ENCRYPTION_SECRET to the secret the other instances use$/);
    expect(await listSigningKeys(database.knex)).toEqual(before);
  });

  test('refused with a wrong secret, never a key sealed under another secret', async () => {
    await loadSigningKeys(database.knex, { algorithm: 'ES256', encryptionSecret: ENCRYPTION_SECRET });
    const before = await listSigningKeys(database.knex);
    const error = await tether(configWith({ encryptionSecret: 'a-different-secret-0123456789abcdefgh' }), 'rotate').catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/^signing keys: refusing to store a key: the configured key-encryption secret is not the one signing key \S+ was encrypted with$/);
    expect(await listSigningKeys(database.knex)).toEqual(before);
  });
});
