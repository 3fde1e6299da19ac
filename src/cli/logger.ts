import { pino, type Logger } from 'pino';

/** JSON logs on stderr (stdout is for command output); TETHER_LOG_LEVEL chooses the level. */
export function createLogger(level = process.env.TETHER_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'tether' } }, pino.destination(2));
}
