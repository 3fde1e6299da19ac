import type { KoaContextWithOIDC } from 'oidc-provider';
import { Refusal } from '../oauth/refusal.js';
import type { DpopProofs } from './dpop.js';
import { proofRecordOf, type ProofRecord } from './dpop_replay.js';
import type { PresentedCertificate } from './presented_certificate.js';

/**
 * Sender constraints, one entry per method (DESIGN: every token is bound by default). Everything that
 * differs between mTLS (RFC 8705) and DPoP (RFC 9449) is an entry of {@link BINDING_METHODS}: the
 * `cnf` member a bound token carries, the key the caller presents on a request, how a new token is
 * bound, its `token_type`, and the client metadata that makes oidc-provider refuse unbound tokens
 * for such a client too. Adding a method is one entry here (docs/extending.md).
 */

/** What a request offers to bind to: the caller's certificate and its DPoP proofs. */
export interface BindingRequest {
  ctx: KoaContextWithOIDC;
  certificate: PresentedCertificate | undefined;
  dpop: DpopProofs;
}

export interface BindingMethod {
  /** The RFC 7800 `cnf` member holding the key's thumbprint (and oidc-provider's token property). */
  readonly cnfMember: string;
  /** RFC 6749 §7.1 `token_type` of a token bound this way (RFC 9449 §5: `DPoP`). */
  readonly tokenType: 'Bearer' | 'DPoP';
  /** oidc-provider client metadata (RFC 8705 §3.4, RFC 9449 §5.2) set for a client bound this way. */
  readonly clientMetadata: string;
  /** The thumbprint of the key of this method the caller demonstrated on this request, if any. */
  presentedKey(request: BindingRequest): Promise<string | undefined>;
  /** The key a new token is bound to, or the Refusal that says what the request lacks. */
  bindNewToken(request: BindingRequest): Promise<NewTokenKey>;
}

/** The key a new token is bound to: its thumbprint, and for DPoP the proof the token may be the only one for. */
export interface NewTokenKey {
  thumbprint: string;
  /** RFC 9449 §11.1: recorded with the token, which is refused if the proof was used before (ledger/record_issuance.ts). */
  singleUseProof?: ProofRecord;
}

export const BINDING_METHODS = {
  /** RFC 8705 §3: the TLS client certificate's SHA-256 thumbprint, `cnf.x5t#S256`. */
  mtls: {
    cnfMember: 'x5t#S256',
    tokenType: 'Bearer',
    clientMetadata: 'tls_client_certificate_bound_access_tokens',
    presentedKey: async ({ certificate }) => certificate?.thumbprint,
    async bindNewToken({ ctx, certificate }) {
      if (ctx.get('DPoP')) {
        throw new Refusal('invalid_request', 'this client\'s tokens are certificate-bound; DPoP is not accepted', 'DPoP proof sent by an mTLS-bound client');
      }
      if (!certificate) {
        throw new Refusal('invalid_request', 'a TLS client certificate is required: this client\'s tokens are certificate-bound', 'no client certificate on the connection');
      }
      return { thumbprint: certificate.thumbprint };
    },
  },
  /** RFC 9449 §5/§6: the JWK thumbprint of the DPoP proof's key, `cnf.jkt`; each proof used once. */
  dpop: {
    cnfMember: 'jkt',
    tokenType: 'DPoP',
    clientMetadata: 'dpop_bound_access_tokens',
    presentedKey: async ({ ctx, dpop }) => (ctx.get('DPoP') ? (await dpop.validated(ctx))?.thumbprint : undefined),
    async bindNewToken({ ctx, dpop }) {
      const proof = await dpop.validated(ctx);
      if (!proof) throw new Refusal('invalid_request', 'a DPoP proof is required: this client\'s tokens are DPoP-bound', 'no DPoP header');
      return { thumbprint: proof.thumbprint, singleUseProof: proofRecordOf(proof) };
    },
  },
} as const satisfies Record<string, BindingMethod>;

/** A sender-constraint method: a key of {@link BINDING_METHODS}. */
export type SenderConstraint = keyof typeof BINDING_METHODS;

export const SENDER_CONSTRAINTS = Object.keys(BINDING_METHODS) as SenderConstraint[];

/** How a token is bound: one of the methods with the key's thumbprint, or not at all (legacy resources). */
export type TokenBinding =
  | ({ method: SenderConstraint } & NewTokenKey)
  | { method: 'bearer' };

/** The `cnf` claim (RFC 7800 §3.1) of a token bound as `binding`; undefined for a bearer token. */
export function cnfOf(binding: TokenBinding): Record<string, string> | undefined {
  return binding.method === 'bearer' ? undefined : { [BINDING_METHODS[binding.method].cnfMember]: binding.thumbprint };
}

/** The `token_type` of a token bound as `binding`. */
export function tokenTypeOf(binding: TokenBinding): 'Bearer' | 'DPoP' {
  return binding.method === 'bearer' ? 'Bearer' : BINDING_METHODS[binding.method].tokenType;
}

export function isSenderConstraint(value: unknown): value is SenderConstraint {
  return typeof value === 'string' && Object.hasOwn(BINDING_METHODS, value);
}
