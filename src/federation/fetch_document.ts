/**
 * Reads a trusted issuer's discovery document or JWKS: bounded in time and size, JSON objects only,
 * no redirects. The issuer is trusted for its signatures, not for its availability: a slow, broken or
 * hostile endpoint must make its requests 503, never hang them or exhaust memory.
 */

/** A `fetch`-compatible function (undici's, with the issuer's CA bundle). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** Why a document could not be read (the caller turns it into 503). */
export class DocumentFetchError extends Error {
  override name = 'DocumentFetchError';
}

export async function fetchJsonDocument(url: string, options: { fetch: FetchLike; timeoutMs: number; maxBytes: number }): Promise<Record<string, unknown>> {
  let response: Response;
  try {
    response = await options.fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs), headers: { accept: 'application/json' } });
  } catch (cause) {
    throw new DocumentFetchError(`request to ${url} failed (${(cause as Error)?.message ?? String(cause)})`, { cause });
  }
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => undefined);
    throw new DocumentFetchError(`${url} answered HTTP ${response.status}`);
  }
  const text = await readBounded(response, url, options.maxBytes);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DocumentFetchError(`${url} did not answer JSON`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new DocumentFetchError(`${url} did not answer a JSON object`);
  return json as Record<string, unknown>;
}

/** The body, chunk by chunk, abandoned as soon as it passes `maxBytes` (a chunked body declares no length). */
async function readBounded(response: Response, url: string, maxBytes: number): Promise<string> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (received > maxBytes) throw new DocumentFetchError(`${url} answered more than ${maxBytes} bytes`);
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => undefined);
    if (error instanceof DocumentFetchError) throw error;
    throw new DocumentFetchError(`reading ${url} failed (${(error as Error)?.message ?? String(error)})`, { cause: error });
  }
  return Buffer.concat(chunks).toString('utf8');
}
