import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

/** A pino logger at `trace` whose lines are kept, as a log collector would receive them. */
export interface CapturedLog {
  logger: Logger;
  /** Everything written so far, exactly as written. */
  text(): string;
  /** Every line, parsed (a line that is not JSON fails the test that reads it). */
  lines(): Record<string, unknown>[];
  /** The access lines (`msg: "request"`) of one request id. */
  accessLinesOf(requestId: string): Record<string, unknown>[];
}

export function captureLog(): CapturedLog {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  const logger = pino({ level: 'trace', base: { service: 'tether' } }, stream);
  const lines = () => text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    logger,
    text: () => text,
    lines,
    accessLinesOf: (requestId) => lines().filter((line) => line.msg === 'request' && line.requestId === requestId),
  };
}
