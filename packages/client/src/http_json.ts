/**
 * Reading the authorization server's JSON answers with a bounded size: a broken or hostile server
 * must not make the client buffer without limit.
 *
 * @module
 */
import type { Response } from 'undici';

/** What a JSON answer turned out to be. */
export type JsonAnswer =
  | { readonly kind: 'object'; readonly body: Record<string, unknown> }
  | { readonly kind: 'not-json' }
  | { readonly kind: 'too-large' };

/** Reads `response`'s body, at most `maxBytes`, as a JSON object. */
export async function readJsonObject(response: Response, maxBytes: number): Promise<JsonAnswer> {
  const declared = Number(response.headers.get('content-length'));
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    return { kind: 'too-large' };
  }
  const text = await readBoundedText(response, maxBytes);
  if (text === undefined) return { kind: 'too-large' };
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return { kind: 'object', body: parsed as Record<string, unknown> };
  } catch {
    // not JSON: reported below
  }
  return { kind: 'not-json' };
}

async function readBoundedText(response: Response, maxBytes: number): Promise<string | undefined> {
  if (response.body === null) return '';
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total).toString('utf8');
}
