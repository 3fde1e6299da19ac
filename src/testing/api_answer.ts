/**
 * What an API answered, reduced to what the probe judges: the status and the OAuth error code, read
 * from the `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1) or else the JSON body.
 */

/** An API's answer to one request. */
export interface ApiAnswer {
  readonly status: number;
  /** The OAuth `error` the API gave, if any. */
  readonly error?: string;
  /** The answer carried the forward-auth refusal marker: a gateway, not the API, refused the request. */
  readonly refusedByGateway?: true;
}

/** Reads the error code from the challenge carrying one, else from a JSON body's `error` member. */
export function errorCodeOf(wwwAuthenticate: string | null, body: string): string | undefined {
  const challenge = wwwAuthenticate?.match(/\berror="([^"]*)"/);
  if (challenge) return challenge[1];
  try {
    const parsed: unknown = JSON.parse(body);
    const error = (parsed as { error?: unknown } | null)?.error;
    return typeof error === 'string' ? error : undefined;
  } catch {
    return undefined;
  }
}

/** `200`, `401 invalid_token`, … */
export function describeAnswer(answer: ApiAnswer): string {
  return answer.error === undefined ? String(answer.status) : `${answer.status} ${answer.error}`;
}
