import type { Logger } from 'pino';

/**
 * SIGTERM / SIGINT stop a long-running command gracefully: `stop` finishes what is in flight, then
 * the process exits 0 (1 if stopping failed). A second signal during the stop is ignored. What it
 * says goes to the command's log, as JSON like every other line there.
 *
 * Returns whether a stop has begun (a reload loop must not start another round once it has).
 */
export function stopOnSignals(logger: Logger, inFlight: string, stop: () => Promise<unknown>): { stopping(): boolean } {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, `${signal}: finishing in-flight ${inFlight}`);
    stop().then(() => {
      logger.info({ signal }, 'stopped');
      logger.flush();
      process.exit(0);
    }, (error: unknown) => {
      logger.error({ err: error, signal }, 'error while stopping');
      logger.flush();
      process.exit(1);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { stopping: () => stopping };
}
