/**
 * Server-provided DPoP nonces (RFC 9449 §8 at the token endpoint, §9 at a resource server), remembered
 * per origin: the last nonce a server handed out is put in the next proof to it.
 *
 * @module
 */

/** The nonces of the origins this client talks to. */
export interface DpopNonces {
  /** The nonce to put in a proof to `url`'s origin, if that server gave one. */
  nonceFor(url: string | URL): string | undefined;
  /** Remembers the `DPoP-Nonce` header of an answer from `url` (RFC 9449 §8.2: any answer may carry a new one). */
  remember(url: string | URL, headers: { get(name: string): string | null }): string | undefined;
}

// RFC 9449 §8.1: nonce = 1*NQCHAR (printable ASCII but `"` and `\`); a huge one is not a nonce.
const NONCE = /^[\x21\x23-\x5B\x5D-\x7E]{1,1024}$/;

/** A nonce memory for at most `maxOrigins` origins (least recently set forgotten first). */
export function createDpopNonces(maxOrigins = 256): DpopNonces {
  const nonces = new Map<string, string>();
  return {
    nonceFor(url) {
      return nonces.get(new URL(url).origin);
    },
    remember(url, headers) {
      const nonce = headers.get('dpop-nonce');
      if (nonce === null || !NONCE.test(nonce)) return undefined;
      const origin = new URL(url).origin;
      nonces.delete(origin);
      nonces.set(origin, nonce);
      if (nonces.size > maxOrigins) nonces.delete(nonces.keys().next().value!);
      return nonce;
    },
  };
}
