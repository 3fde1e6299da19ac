/**
 * The verifier talks to Tether (metadata, JWKS, introspection) over HTTPS whose certificate chains to
 * Tether's own CA, so it gets a `fetch` that trusts that CA: undici's, with a dispatcher.
 */
import { Agent, fetch } from 'undici';
import type { FetchLike } from '../../src/resource_server/index.js';

/** A `fetch` trusting `caPem`, and the dispatcher behind it (close it when done). */
export function fetchTrusting(caPem: string): { fetch: FetchLike; agent: Agent } {
  const agent = new Agent({ connect: { ca: caPem } });
  // A dispatcher given per call (introspection presents the API's own certificate) wins over this one.
  const trusting = ((input: string, init?: object) => fetch(input, { dispatcher: agent, ...init })) as unknown as FetchLike;
  return { fetch: trusting, agent };
}
