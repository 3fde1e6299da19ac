import { parse, protocol, type PGlite } from '@electric-sql/pglite';

/**
 * A named prepared statement on PGlite, which PGlite's own `query()` never makes: every call of
 * `query()` parses and plans its text anew (an unnamed statement), which for the issuance statement
 * is most of its cost — about 1.5 ms of the main thread per statement, against 60–70 µs per row once
 * ten or more rows share it (docs/benchmarks.md, "PGlite"). Here the statement is parsed once per
 * database session and then only bound and executed, in one call into PGlite instead of five.
 *
 * The caller holds knex's only connection (the PGlite itself), so nothing else can run on the
 * session meanwhile, and runs this inside PGlite's exclusive section. Parsing is decided without
 * state of our own: the session is asked to bind the statement, and only when PostgreSQL answers that
 * it does not exist (SQLSTATE 26000: a new session) is it parsed and bound again. With no transaction
 * open the statement commits on its own (an implicit transaction, as with `query()`), and the data
 * directory is synced as `query()` syncs it.
 */
const UNDEFINED_PREPARED_STATEMENT = '26000';

type Message = Awaited<ReturnType<PGlite['execProtocolStream']>>[number];

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const whole = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    whole.set(part, offset);
    offset += part.length;
  }
  return whole;
}

/** Bind, describe the portal (for the column types), execute, sync: one round into PGlite. */
function executeMessage(name: string, values: readonly string[]): Uint8Array {
  return concat([
    protocol.serialize.bind({ statement: name, values: [...values] }),
    protocol.serialize.describe({ type: 'P' }),
    protocol.serialize.execute({}),
    protocol.serialize.sync(),
  ]);
}

function errorOf(messages: readonly Message[]): (Error & { code?: string }) | undefined {
  return messages.find((message): message is Message & Error & { code?: string } => message instanceof Error);
}

async function send(pglite: PGlite, message: Uint8Array): Promise<Message[]> {
  // throwOnError false: an error is one of the messages, and the Sync after it still ends the
  // exchange, so the session is ready for the next statement whatever happened.
  return pglite.execProtocolStream(message, { syncToFs: false, throwOnError: false });
}

/** Runs the named statement `name` with text `text` and text-format `values`; resolves its rows. */
export async function runPreparedOnPglite(pglite: PGlite, name: string, text: string, values: readonly string[]): Promise<Record<string, unknown>[]> {
  return pglite.runExclusive(async () => {
    let messages = await send(pglite, executeMessage(name, values));
    let error = errorOf(messages);
    if (error?.code === UNDEFINED_PREPARED_STATEMENT) {
      messages = await send(pglite, concat([protocol.serialize.parse({ name, text }), executeMessage(name, values)]));
      error = errorOf(messages);
    }
    await pglite.syncToFs();
    if (error !== undefined) throw error;
    const [result] = parse.parseResults(messages, pglite.parsers);
    return (result?.rows ?? []) as Record<string, unknown>[];
  });
}
