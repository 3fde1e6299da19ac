/**
 * One call to the token endpoint (RFC 6749 §3.2): the form, the client's authentication, a DPoP proof
 * when the client's tokens are DPoP-bound, and one retry when the server asks for a DPoP nonce
 * (RFC 9449 §8). The answer is returned unchecked; token_response.ts checks it.
 *
 * @module
 */
import type { Dispatcher } from 'undici';
import type { Authenticator } from './client_auth.js';
import { signDpopProof, type DpopKey } from './dpop.js';
import type { DpopNonces } from './dpop_nonces.js';
import { ClientError, TokenEndpointError } from './errors.js';
import { readJsonObject } from './http_json.js';
import type { FetchFunction } from './transport.js';

/** Everything a token request needs besides its form. */
export interface TokenEndpointContext {
  readonly issuer: string;
  readonly tokenEndpoint: string;
  readonly clientId: string;
  readonly authenticate: Authenticator;
  readonly dpopKey: DpopKey | undefined;
  readonly nonces: DpopNonces;
  readonly fetch: FetchFunction;
  readonly dispatcher: Dispatcher;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly now: () => number;
}

/** A 200 answer's body, and when the request that got it was sent. */
export interface TokenEndpointAnswer {
  readonly body: Record<string, unknown>;
  readonly obtainedAt: number;
}

// RFC 6749 §5.2: the characters `error` and `error_description` may use.
const ERROR_CODE = /^[\x20\x21\x23-\x5B\x5D-\x7E]{1,256}$/;
const ERROR_DESCRIPTION = /^[\x20\x21\x23-\x5B\x5D-\x7E]{0,1024}$/;

/** POSTs `form` to the token endpoint; resolves a 200 JSON object, rejects with a {@link ClientError} otherwise. */
export async function postTokenRequest(context: TokenEndpointContext, form: Record<string, string | undefined>): Promise<TokenEndpointAnswer> {
  // At most one retry, and only when the server asks for a DPoP nonce it has just supplied.
  for (let attempt = 0; ; attempt += 1) {
    const obtainedAt = context.now();
    const { status, headers, answer } = await send(context, form, obtainedAt);
    const nonce = context.nonces.remember(context.tokenEndpoint, headers);
    if (answer.kind === 'too-large') throw new ClientError('ERR_TOKEN_RESPONSE_INVALID', `the token endpoint answered ${status} with a body over ${context.maxBytes} bytes`);
    if (status === 200 && answer.kind === 'object') return { body: answer.body, obtainedAt };
    const error = answer.kind === 'object' ? answer.body.error : undefined;
    if (typeof error !== 'string' || !ERROR_CODE.test(error) || status === 200) {
      throw new ClientError('ERR_TOKEN_RESPONSE_INVALID', `the token endpoint answered ${status} without a token or an OAuth error`);
    }
    // RFC 9449 §8: `use_dpop_nonce` with a DPoP-Nonce header; the proof is made again with it.
    if (error === 'use_dpop_nonce' && context.dpopKey !== undefined && nonce !== undefined && attempt === 0) continue;
    const description = answer.kind === 'object' ? answer.body.error_description : undefined;
    throw new TokenEndpointError(status, error, typeof description === 'string' && ERROR_DESCRIPTION.test(description) ? description : undefined);
  }
}

async function send(context: TokenEndpointContext, form: Record<string, string | undefined>, now: number) {
  // Authentication is made per attempt: an assertion's jti is single-use.
  const authentication = await context.authenticate({ clientId: context.clientId, issuer: context.issuer, tokenEndpoint: context.tokenEndpoint, now });
  const headers: Record<string, string> = {
    accept: 'application/json',
    'content-type': 'application/x-www-form-urlencoded',
    ...authentication.headers,
  };
  if (context.dpopKey !== undefined) {
    headers.dpop = await signDpopProof(context.dpopKey, { htm: 'POST', url: context.tokenEndpoint, nonce: context.nonces.nonceFor(context.tokenEndpoint) }, now);
  }
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...form, ...authentication.form })) if (value !== undefined) body.append(name, value);
  try {
    const response = await context.fetch(context.tokenEndpoint, {
      method: 'POST',
      headers,
      body: body.toString(),
      dispatcher: context.dispatcher,
      // A redirect would resend the credentials elsewhere; the token endpoint is where metadata says.
      redirect: 'manual',
      signal: AbortSignal.timeout(context.timeoutMs),
    });
    return { status: response.status, headers: response.headers, answer: await readJsonObject(response, context.maxBytes) };
  } catch (cause) {
    throw new ClientError('ERR_TOKEN_ENDPOINT_UNREACHABLE', `the token endpoint of ${context.issuer} could not be reached or did not answer in time`, { cause });
  }
}
