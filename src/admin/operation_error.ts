import { CommandError } from '../cli/cli_errors.js';

/**
 * How an admin operation refuses a request. Apart from operations.ts, which admin_api.ts loads at
 * the first authenticated call (with the command code its operations run), not at start.
 */

/** A bad request: 400 (or 404 for a thing that does not exist), with the message as the description. */
export class OperationError extends Error {
  constructor(readonly status: 400 | 404, message: string) {
    super(message);
    this.name = 'OperationError';
  }
}

/** A refusal of the command functions: a thing that does not exist is 404, anything else 400. */
export function operationErrorOf(error: unknown): OperationError | undefined {
  if (error instanceof OperationError) return error;
  if (error instanceof CommandError) return new OperationError(/^no (token|client|signing key) /.test(error.message) ? 404 : 400, error.message);
  return undefined;
}
