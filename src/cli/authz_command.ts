/**
 * `tether authz --config authz.yaml`: the forward-auth server for an API that cannot check tokens
 * itself (docs/gateways.md). The gateway asks it about every request before proxying; it answers
 * from the package's `startForwardAuthServer`, configured by a validated file.
 *
 * Exit codes (docs/cli.md#conventions): 2 for an invalid configuration (every error names the file
 * and the path), 1 when the server cannot run (its port taken), 0 after SIGTERM / SIGINT.
 */
import type { Command } from 'commander';
import { configOption, jsonOption, type CliIo } from './command_conventions.js';

/** `tether authz` options as commander parses them. */
export interface AuthzCommandOptions {
  config: string;
  check?: boolean;
  json?: boolean;
}

/** Registers `tether authz`; what it runs (authz_server.ts) is loaded when it runs. */
export function registerAuthzCommand(program: Command, io: CliIo): void {
  program.command('authz')
    .description('run the forward-auth server a gateway (nginx auth_request, Envoy ext_authz, Traefik, Caddy) asks before proxying to an API')
    .addOption(configOption().makeOptionMandatory())
    .option('--check', 'validate the configuration and exit')
    .addOption(jsonOption())
    .action(async (options: AuthzCommandOptions) => (await import('./authz_server.js')).runAuthz(options, io));
}
