/**
 * The one error type Tether's policy, grant and binding code throws when it refuses a request. Pure:
 * it names the OAuth error (RFC 6749 §5.2 and the RFCs that add codes) and carries the public
 * `description` the client reads and the private `reason` that goes only to the ledger and logs.
 * oauth/error_boundary.ts is the one place that turns it into the oidc-provider error sent.
 */

/** The OAuth error codes Tether's own code answers with. */
export type RefusalCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'invalid_scope'
  // RFC 8707 §2
  | 'invalid_target'
  // RFC 9449 §5
  | 'invalid_dpop_proof'
  // Not in RFC 6749 §5.2 for the token endpoint; the common practice, sent with 503.
  | 'temporarily_unavailable';

export class Refusal extends Error {
  override name = 'Refusal';

  /** The HTTP status when it is not the code's usual one (421 for a misdirected request, say). */
  readonly status: number | undefined;

  constructor(
    readonly error: RefusalCode,
    readonly description: string,
    readonly reason: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(reason, options);
    this.status = options?.status;
  }
}

/**
 * A store the request waits on (the database, mostly) could not answer: 503 temporarily_unavailable
 * with Retry-After, never a 500. The private reason names the failure; `cause` keeps it with its stack.
 */
export class DatabaseFailure extends Refusal {
  override name = 'DatabaseFailure';

  constructor(cause: unknown, description = 'the server cannot record tokens right now; retry later') {
    super('temporarily_unavailable', description, `database unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}
