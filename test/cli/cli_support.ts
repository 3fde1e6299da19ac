import { Writable } from 'node:stream';
import type { CommandContext } from '../../src/cli/inventory_output.js';
import type { RunningTether } from '../../src/testing/start_tether.js';

/** A stream that keeps what commands print. */
export class Captured extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }

  take(): string {
    const { text } = this;
    this.text = '';
    return text;
  }
}

/** A command context over the database a running Tether uses, printing into `out`. */
export function contextFor(tether: RunningTether, out: Captured): CommandContext {
  return {
    knex: tether.database.knex,
    config: tether.config,
    out,
    actor: 'cli:tester@test-host',
    facts: { requestId: 'cli-test', sourceAddress: undefined, instanceId: 'cli@test-host' },
  };
}
