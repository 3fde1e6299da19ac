/**
 * A configuration that cannot be used. `problems` are every mistake found, one per line, each
 * naming the bad path; `message` holds them all. Nothing secret is in either (config/redact.ts).
 *
 * Apart from load_config.ts (which exports it too) so that the CLI's error handling is defined
 * without loading the configuration schema: `tether --help` needs neither.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';

  constructor(message: string, readonly problems: readonly string[] = [message]) {
    super(message);
  }
}
