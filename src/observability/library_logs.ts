import type { Logger } from 'pino';

/**
 * Messages of the libraries Tether runs on, as JSON lines of Tether's logger (docs/operations.md#logs):
 * the log stream carries nothing else, so a collector parses every line.
 */

/** What knex's `log` option takes (knex prints with console.log without it). */
export interface KnexLog {
  warn(message: unknown): void;
  error(message: unknown): void;
  deprecate(method: string, alternative: string): void;
  debug(message: unknown): void;
}

/**
 * knex's warnings ("Acquire connection error" for each failed attempt while the database is down,
 * pool errors) at warn, its errors at error, with `component: "knex"`. The failures themselves
 * reach callers as errors (503 on the token path); these lines are for the operator.
 */
export function knexLogTo(logger: Logger): KnexLog {
  const child = logger.child({ component: 'knex' });
  return {
    warn: (message) => child.warn(withoutCredentials(describe(message))),
    error: (message) => child.error(withoutCredentials(describe(message))),
    deprecate: (method, alternative) => child.warn(`${method} is deprecated, use ${alternative}`),
    debug: () => undefined,
  };
}

/**
 * A URL's password (`postgres://user:secret@host/db`) replaced by `***`: a library that prints
 * its connection string must not put the database password into the log.
 */
export function withoutCredentials(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s/@:]*:)[^\s/@]*@/gi, '$1***@');
}

function describe(message: unknown): string {
  if (message instanceof Error) return message.message;
  return typeof message === 'string' ? message : String(message);
}

/**
 * Process warnings (a library's deprecation, `process.emitWarning` anywhere) as warn lines of the
 * logger instead of Node's plain `(node:PID) Warning: …` on stderr. For the server commands only,
 * which own their process: Node prints warnings through a 'warning' listener of its own, which is
 * replaced here.
 */
export function routeProcessWarnings(logger: Logger): void {
  const child = logger.child({ component: 'process' });
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    child.warn({ warning: warning.name, code: warning.code }, withoutCredentials(warning.message));
  });
}
