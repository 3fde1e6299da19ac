import type { Logger } from 'pino';
import { createLogger } from './logger.js';
import { stopOnSignals } from './graceful_stop.js';
import { routeProcessWarnings } from '../observability/library_logs.js';
import { runServer, type RunningServer, type ServerOptions } from './run_server.js';

/**
 * `tether dev` and `tether start`: the server, its log and its signals. program.ts loads this module
 * only when one of them runs, so that no other command pays for loading the server.
 */
export async function serve(options: Omit<ServerOptions, 'logger'>): Promise<void> {
  const logger = createLogger();
  routeProcessWarnings(logger);
  await serveWithSignals(logger, () => runServer({ ...options, logger }));
}

/**
 * Runs the server `start` resolves to with its signals: SIGTERM / SIGINT stop gracefully; SIGHUP
 * reloads the configuration file (docs/operations.md#configuration-reload). Reloads run one at a
 * time; signals that arrive during one ask for one more, not one each. A SIGHUP that arrives while
 * the server is still starting is kept for when it runs (the file may have changed after it was read),
 * rather than ending the process as Node's default would. What it says goes to the server's log, as
 * JSON like every other line there.
 */
async function serveWithSignals(logger: Logger, start: () => Promise<RunningServer>): Promise<void> {
  let server: RunningServer | undefined;
  // Set once the server runs; a SIGHUP during start-up reads it before then.
  const stopSignals: { current?: { stopping(): boolean } } = {};
  let reloading: Promise<unknown> | undefined;
  let again = false;
  const onReload = () => {
    if (stopSignals.current?.stopping()) return;
    if (reloading || !server) {
      again = true;
      return;
    }
    const { reload } = server;
    reloading = (async () => {
      do {
        again = false;
        await reload();
      } while (again && !stopSignals.current?.stopping());
      reloading = undefined;
    })();
  };
  process.on('SIGHUP', onReload);
  try {
    server = await start();
  } catch (error) {
    process.off('SIGHUP', onReload);
    throw error;
  }
  const { stop } = server;
  if (again) onReload();
  // A reload under way finishes first: the database it may be writing to closes after it.
  stopSignals.current = stopOnSignals(logger, 'requests', () => Promise.resolve(reloading).then(stop));
}
