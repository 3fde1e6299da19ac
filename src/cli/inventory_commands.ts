import { Command, InvalidArgumentError, Option } from 'commander';
import { TOKEN_STATES } from '../ledger/events.js';
import { DEFAULT_WINDOW_DAYS, MAX_WINDOW_DAYS, windowDaysOf } from '../ledger/report_window.js';
import { configOption, jsonOption, takesIds } from './command_conventions.js';
import type { ConfigResolver, withContext as contextOf } from './command_context.js';
import type { ReportOptions } from './report_command.js';

/**
 * Registers `tether tokens …`, `tether clients …`, `tether ledger …` and `tether report`. Each command resolves the
 * configuration and database the way `tether migrate` does, runs, and closes the database.
 *
 * Only the commands' names, arguments, options and help are defined here: what a command does is
 * loaded when it runs (command_context.ts and the `*_commands.ts` module it names), so that building
 * the program, `--help` and `tether dev` load none of it.
 */

const withContext: typeof contextOf = async (...args) => (await import('./command_context.js')).withContext(...args);
const tokensCommands = () => import('./tokens_commands.js');
const clientsCommands = () => import('./clients_commands.js');
const ledgerCommands = () => import('./ledger_commands.js');

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
      withContext(configFor, options.config, out, async (context) => (await tokensCommands()).tokensList(context, options), {
        method: 'GET', path: '/tokens', input: { client: options.client, resource: options.resource, issuer: options.issuer, state: options.state, limit: options.limit }, json: options.json,
      }));
  takesIds(tokens.command('show'))
    .description('one token: claims, binding, lineage (parent and children), last use, events')
    .argument('<token-id>', 'a JWT\'s jti, or the ledger id of an opaque token')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { json?: boolean; config?: string }) => withContext(configFor, options.config, out, async (context) => (await tokensCommands()).tokensShow(context, id, options), {
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
      withContext(configFor, options.config, out, async (context) => (await tokensCommands()).tokensRevoke(context, id, options), {
        method: 'POST', path: '/tokens/revoke', input: { token_id: id, client_id: options.client, resource: options.resource, reason: options.reason }, json: options.json,
      }));
  return tokens;
}

function clientsCommand(configFor: ConfigResolver, out: NodeJS.WritableStream): Command {
  const clients = new Command('clients').description('clients: owner, purpose, permitted APIs, live tokens; suspend and resume');
  clients.command('list').description('every client with its owner, purpose, resources and active token count')
    .addOption(jsonOption()).addOption(configOption())
    .action((options: { json?: boolean; config?: string }) => withContext(configFor, options.config, out, async (context) => (await clientsCommands()).clientsList(context, options), {
      method: 'GET', path: '/clients', input: {}, json: options.json,
    }));
  takesIds(clients.command('show')).description('one client, its permitted resources and recent events').argument('<client-id>')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { json?: boolean; config?: string }) => withContext(configFor, options.config, out, async (context) => (await clientsCommands()).clientsShow(context, id, options), {
      method: 'GET', path: `/clients/${encodeURIComponent(id)}`, input: {}, json: options.json,
    }));
  takesIds(clients.command('suspend')).description('no new tokens for this client, and revoke its live tokens').argument('<client-id>')
    .option('--reason <text>', 'why (recorded in the ledger)')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { reason?: string; json?: boolean; config?: string }) => withContext(configFor, options.config, out, async (context) => (await clientsCommands()).clientsSuspend(context, id, options), {
      method: 'POST', path: `/clients/${encodeURIComponent(id)}/suspend`, input: { reason: options.reason }, json: options.json,
    }));
  takesIds(clients.command('resume')).description('let a suspended client obtain tokens again').argument('<client-id>')
    .option('--reason <text>', 'why (recorded in the ledger)')
    .addOption(jsonOption()).addOption(configOption())
    .action((id: string, options: { reason?: string; json?: boolean; config?: string }) => withContext(configFor, options.config, out, async (context) => (await clientsCommands()).clientsResume(context, id, options), {
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
          await (await ledgerCommands()).ledgerTail(context, { ...options, signal: stop.signal });
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
      withContext(configFor, options.config, out, async (context) => (await ledgerCommands()).ledgerPrune(context, options)));
  return ledger;
}

/** `tether report`: the exposure report (docs/report.md), from the database or a running `tether dev`. */
function reportCommandOf(configFor: ConfigResolver, out: NodeJS.WritableStream): Command {
  return new Command('report')
    .description('exposure report: live tokens, last issuance and use, unused scopes, idle clients, refused presentations, per client and API')
    .option('--window <days>', 'whole UTC days, today included, e.g. 30d', parseWindowOption, DEFAULT_WINDOW_DAYS)
    .option('--client <id>', 'only this client')
    .option('--resource <uri>', 'only this API (and, for lateral movement, its tokens presented elsewhere)')
    .addOption(jsonOption()).addOption(configOption())
    .action((options: ReportOptions & { config?: string }) => withContext(configFor, options.config, out, async (context) => (await import('./report_command.js')).reportCommand(context, options), {
      method: 'GET', path: '/report', input: { window: `${options.window}d`, client: options.client, resource: options.resource }, json: options.json,
    }));
}

/** The `--window` parser: `30d` or `30`; anything else is a usage error (exit code 2) before any database is opened. */
export function parseWindowOption(value: string): number {
  const days = windowDaysOf(value);
  if (days === undefined) throw new InvalidArgumentError(`a number of days from 1 to ${MAX_WINDOW_DAYS}, e.g. 30d (use is summed per UTC day)`);
  return days;
}

/** Adds the inventory commands to the `tether` program; `configFor` is how `tether migrate` finds its configuration. */
export function registerInventoryCommands(program: Command, configFor: ConfigResolver, out: NodeJS.WritableStream = process.stdout): void {
  program.addCommand(tokensCommand(configFor, out));
  program.addCommand(clientsCommand(configFor, out));
  program.addCommand(ledgerCommand(configFor, out));
  program.addCommand(reportCommandOf(configFor, out));
}
