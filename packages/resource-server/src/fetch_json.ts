/**
 * The one HTTP client of the verifier: bounded time, bounded size, JSON objects only.
 *
 * Metadata, JWKS and introspection answers come from the issuer; even so, a slow or broken issuer
 * must not hang or exhaust the resource server, so each call has a timeout and a size cap.
 *
 * @module
 */
import { parseJsonObject, type JsonObject } from './compact_jws.js';

/** A `fetch`-compatible function (the global `fetch`, undici's `fetch`, or a test double). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Limits for one call. */
export interface FetchJsonOptions {
  readonly fetch: FetchLike;
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

/** Why a call failed; the caller turns it into the right {@link VerifierError}. */
export class FetchJsonError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FetchJsonError';
  }
}

/** Requests `url` and resolves its JSON object body; rejects with {@link FetchJsonError} otherwise. */
export async function fetchJson(url: string, init: RequestInit, options: FetchJsonOptions): Promise<JsonObject> {
  let response: Response;
  try {
    response = await options.fetch(url, {
      ...init,
      redirect: 'manual', // a redirect from the issuer is a misconfiguration, not something to follow
      signal: AbortSignal.timeout(options.timeoutMs),
      headers: { accept: 'application/json', ...(init.headers as Record<string, string> | undefined) },
    });
  } catch (cause) {
    throw new FetchJsonError(`request to ${url} failed`, { cause });
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new FetchJsonError(`${url} answered HTTP ${response.status}`);
  }
  const declared = Number(response.headers.get('content-length'));
  if (declared > options.maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new FetchJsonError(`${url} answered more than ${options.maxBytes} bytes`);
  }
  const body = await readBounded(response, url, options.maxBytes);
  const json = parseJsonObject(body);
  if (json === undefined) throw new FetchJsonError(`${url} did not answer a JSON object`);
  return json;
}

/** Reads the body chunk by chunk, giving up as soon as it passes `maxBytes` (chunked bodies have no length). */
async function readBounded(response: Response, url: string, maxBytes: number): Promise<Buffer> {
  if (response.body === null) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw new FetchJsonError(`${url} answered more than ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  } catch (cause) {
    if (cause instanceof FetchJsonError) throw cause;
    throw new FetchJsonError(`reading ${url} failed`, { cause });
  }
  return Buffer.concat(chunks, total);
}
