import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { Command, Option } from 'commander';
import type { TetherConfig } from '../config/schema.js';
import { clientsList, clientsResume, clientsShow, clientsSuspend } from './clients_commands.js';
import { CommandError } from './cli_errors.js';
import { configOption, jsonOption, takesIds } from './command_conventions.js';
import type { CommandContext } from './inventory_output.js';
import { ledgerPrune, ledgerTail } from './ledger_commands.js';
import { openConfiguredDatabase } from './run_server.js';
import { explainDatabaseError } from './server_errors.js';
import type { DevCredential } from '../admin/dev_credential.js';
import { callRunningServer, runningDevServer, type RemoteRequest } from './admin_remote.js';
import { reportCommand, reportCommandDefinition } from './report_command.js';
import { TOKEN_STATES, tokensList, tokensRevoke, tokensShow } from './tokens_commands.js';

/**
 * Registers `tether tokens …`, `tether clients …`, `tether ledger …` and `tether report`. Each command resolves the
 * configuration and database the way `tether migrate` does, runs, and closes the database.
 */

/** `cli:<user>@<host>`, the ledger's actor for changes made from the command line. */
export function commandLineActor(): string {
  let user = process.env.USER ?? 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (containers): keep $USER.
  }
  return `cli:${user}@${hostname()}`;
}

type ConfigResolver = (configFile: string | undefined) => Promise<TetherConfig>;
type Run = (context: CommandContext) => Promise<unknown>;

/** PostgreSQL's "undefined_table": the schema was never migrated. */
const UNDEFINED_TABLE = '42P01';

/**
 * Runs a command on the configured database — or, when a running `tether dev` holds its embedded
 * database, sends `remote` to that server's admin API (cli/admin_remote.ts).
 */
async function withContext(configFor: ConfigResolver, configFile: string | undefined, out: NodeJS.WritableStream, run: Run, remote?: RemoteRequest): Promise<void> {
  const config = await configFor(configFile);
  const server = remote ? await runningDevServer(config) : undefined;
  if (server && remote) {
    await sendToRunningServer(server, remote, out);
    return;
  }
  const database = await openConfiguredDatabase(config).catch((error: unknown) => { throw explainDatabaseError(error, config, configFile); });
  const context: CommandContext = {
    knex: database.knex,
    config,
    out,
    actor: commandLineActor(),
    facts: { requestId: `cli-${randomUUID()}`, sourceAddress: undefined, instanceId: `cli@${hostname()}` },
  };
  try {
    await run(context);
  } catch (error) {
    if ((error as { code?: string }).code === UNDEFINED_TABLE) throw new CommandError('the database has no ledger yet; run `tether migrate` first');
    throw explainDatabaseError(error, config, configFile);
  } finally {
    await database.close();
  }
}

/** Sends a command to a running `tether dev`; Ctrl-C ends a followed stream. */
export async function sendToRunningServer(server: DevCredential, remote: RemoteRequest, out: NodeJS.WritableStream): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    await callRunningServer(server, remote, commandLineActor(), { out, err: process.stderr, signal: stop.signal });
  } finally {
    process.off('SIGINT', onSignal);
  }
}

function tokensCommand(configFor: ConfigResolver, out: NodeJS.WritableStream): Command {
  const tokens = new Command('tokens').description('issued tokens: find them by client, API and state; show one; revoke');
  tokens.command('list')
    .description('tokens, newest first')
    .option('--client <id>', 'only this client\'s tokens')
    .option('--resource <uri>', 'only tokens for this API (aud)')
    .option('--issuer <iss>', 'only tokens issued for an identity of this trusted external issuer (federation)')
    .addOption(new Option('--state <state>', 'only tokens in this state').choices([...TOKEN_STATES]))
    .option('--limit <n>', 'at most this many', (value) => Number.parseInt(value, 10), 100)
    .addOption(jsonOption()).addOption(configOption())
    .action((options: { client?: string; resource?: string; issuer?: string; state?: string; limit: number; json?: boolean; config?: string }) =>
      withContext(configFor, options.config, out, (context) => tokensList(context, options), {
        method: 'GET', path: '/tokens', input: { client: options.client, resource: options.resource, issuer: options.issuer, state: options.state, limit: options.limit }, json: options.json,
      }));
  takesIds(tokens.command('show'))
    .description('one token: claims, binding, lineage (parent and children), last use, events')
    .argument('<token-id>', 'a JWT\'s jti, or the ledger id of an opaque token')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { json?: boolean; config?: string }) => withContext(configFor, options.config, out, (context) => tokensShow(context, id, options), {
      method: 'GET', path: `/tokens/${encodeURIComponent(id)}`, input: {}, json: options.json,
    }));
  takesIds(tokens.command('revoke'))
    .description('revoke one token, or every live token of a client or an API; tokens exchanged from them are revoked too')
    .argument('[token-id]', 'a JWT\'s jti, or the ledger id of an opaque token')
    .option('--client <id>', 'every live token of this client')
    .option('--resource <uri>', 'every live token for this API')
    .option('--reason <text>', 'why (recorded in the ledger)')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string | undefined, options: { client?: string; resource?: string; reason?: string; json?: boolean; config?: string }) =>
      withContext(configFor, options.config, out, (context) => tokensRevoke(context, id, options), {
        method: 'POST', path: '/tokens/revoke', input: { token_id: id, client_id: options.client, resource: options.resource, reason: options.reason }, json: options.json,
      }));
  return tokens;
}

function clientsCommand(configFor: ConfigResolver, out: NodeJS.WritableStream): Command {
  const clients = new Command('clients').description('clients: owner, purpose, permitted APIs, live tokens; suspend and resume');
  clients.command('list').description('every client with its owner, purpose, resources and active token count')
    .addOption(jsonOption()).addOption(configOption())
    .action((options: { json?: boolean; config?: string }) => withContext(configFor, options.config, out, (context) => clientsList(context, options), {
      method: 'GET', path: '/clients', input: {}, json: options.json,
    }));
  takesIds(clients.command('show')).description('one client, its permitted resources and recent events').argument('<client-id>')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { json?: boolean; config?: string }) => withContext(configFor, options.config, out, (context) => clientsShow(context, id, options), {
      method: 'GET', path: `/clients/${encodeURIComponent(id)}`, input: {}, json: options.json,
    }));
  takesIds(clients.command('suspend')).description('no new tokens for this client, and revoke its live tokens').argument('<client-id>')
    .option('--reason <text>', 'why (recorded in the ledger)')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { reason?: string; json?: boolean; config?: string }) => withContext(configFor, options.config, out, (context) => clientsSuspend(context, id, options), {
      method: 'POST', path: `/clients/${encodeURIComponent(id)}/suspend`, input: { reason: options.reason }, json: options.json,
    }));
  takesIds(clients.command('resume')).description('let a suspended client obtain tokens again').argument('<client-id>')
    .option('--reason <text>', 'why (recorded in the ledger)')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { reason?: string; json?: boolean; config?: string }) => withContext(configFor, options.config, out, (context) => clientsResume(context, id, options), {
      method: 'POST', path: `/clients/${encodeURIComponent(id)}/resume`, input: { reason: options.reason }, json: options.json,
    }));
  return clients;
}

function ledgerCommand(configFor: ConfigResolver, out: NodeJS.WritableStream): Command {
  const ledger = new Command('ledger').description('the append-only event ledger');
  ledger.command('tail').description('the newest events; --follow keeps printing new ones')
    .option('-n, --lines <n>', 'how many recent events', (value) => Number.parseInt(value, 10), 20)
    .option('-f, --follow', 'keep polling for new events (Ctrl-C stops)')
    .option('--client <id>', 'only events about this client')
    .option('--type <type>', 'only events of this type, e.g. request.rejected')
    .addOption(new Option('--json', 'one JSON object per line (snake_case names)'))
    .addOption(configOption())
    .action((options: { lines: number; follow?: boolean; json?: boolean; client?: string; type?: string; config?: string }) =>
      withContext(configFor, options.config, out, async (context) => {
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        try {
          await ledgerTail(context, { ...options, signal: stop.signal });
        } finally {
          process.off('SIGINT', onSignal);
        }
      }, {
        method: 'GET', path: '/ledger/tail', input: { lines: options.lines, client: options.client, type: options.type, follow: options.follow }, json: options.json,
      }));
  ledger.command('prune')
    .description('delete rejection and introspection events older than --before (issuance, exchange and revocation events stay)')
    .requiredOption('--before <when>', 'an ISO 8601 date or time, or an age such as 30d or 12h')
    .option('--type <type>', 'only request.rejected or only token.introspected')
    .option('--dry-run', 'count what would be deleted; delete nothing')
    .addOption(jsonOption()).addOption(configOption())
    .action((options: { before: string; type?: string; dryRun?: boolean; json?: boolean; config?: string }) =>
      withContext(configFor, options.config, out, (context) => ledgerPrune(context, options)));
  return ledger;
}

/** `tether report`: the exposure report (docs/report.md), from the database or a running `tether dev`. */
function reportCommandOf(configFor: ConfigResolver, out: NodeJS.WritableStream): Command {
  return reportCommandDefinition((options) => withContext(configFor, options.config, out, (context) => reportCommand(context, options), {
    method: 'GET', path: '/report', input: { window: `${options.window}d`, client: options.client, resource: options.resource }, json: options.json,
  }));
}

/** Adds the inventory commands to the `tether` program; `configFor` is how `tether migrate` finds its configuration. */
export function registerInventoryCommands(program: Command, configFor: ConfigResolver, out: NodeJS.WritableStream = process.stdout): void {
  program.addCommand(tokensCommand(configFor, out));
  program.addCommand(clientsCommand(configFor, out));
  program.addCommand(ledgerCommand(configFor, out));
  program.addCommand(reportCommandOf(configFor, out));
}
