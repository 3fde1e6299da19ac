/**
 * Sender constraint of the token: mutual-TLS certificate binding (RFC 8705 §3) or DPoP key binding
 * (RFC 9449 §6–§7), and the refusal of unbound tokens unless Bearer tokens are allowed.
 *
 * @module
 */
import { certificateThumbprint, type ClientCertificateInput } from './certificate.js';
import type { Credentials } from './authorization_header.js';
import { verifyDpopProof, type DpopRules } from './dpop_proof.js';
import { VerifierError } from './errors.js';
import type { AccessTokenClaims } from './verify_access_token.js';

/** How the token was bound to its presenter. */
export type BindingKind = 'mtls' | 'dpop' | 'mtls+dpop' | 'none';

/** The parts of the request the binding is checked against. */
export interface BindingRequest {
  readonly method: string;
  readonly url: string;
  readonly dpop: string | readonly string[] | undefined;
  readonly clientCertificate: ClientCertificateInput | undefined;
}

/** What binding checks need from the configuration. */
export interface BindingRules {
  readonly allowBearer: boolean;
  /** `undefined` when DPoP is disabled: DPoP-bound tokens are then refused. */
  readonly dpop: DpopRules | undefined;
}

/** Checks the token's `cnf` against the request; resolves which binding was verified. */
export async function checkBinding(
  claims: AccessTokenClaims,
  credentials: Credentials,
  request: BindingRequest,
  rules: BindingRules,
  now: number,
): Promise<BindingKind> {
  const { cnf } = claims;
  const x5t = cnf?.['x5t#S256'];
  const jkt = cnf?.jkt;
  if (cnf !== undefined && x5t === undefined && jkt === undefined) {
    // A confirmation method we do not implement cannot be checked, so the token is refused even
    // when Bearer tokens are allowed: accepting it would drop the issuer's binding silently.
    throw new VerifierError('ERR_BINDING_UNSUPPORTED', 'access token is bound by an unsupported confirmation method');
  }
  if (jkt !== undefined) await checkDpopBinding(jkt, credentials, request, rules, now);
  else if (credentials.scheme === 'DPoP') {
    // RFC 9449 §7.1: the DPoP scheme presents DPoP-bound tokens only.
    throw new VerifierError('ERR_DPOP_NOT_BOUND', 'access token is not DPoP-bound');
  }
  if (x5t !== undefined) checkCertificateBinding(x5t, request.clientCertificate);
  if (cnf === undefined) {
    if (!rules.allowBearer) throw new VerifierError('ERR_TOKEN_UNBOUND', 'access token is not sender-constrained');
    return 'none';
  }
  return jkt === undefined ? 'mtls' : x5t === undefined ? 'dpop' : 'mtls+dpop';
}

async function checkDpopBinding(jkt: unknown, credentials: Credentials, request: BindingRequest, rules: BindingRules, now: number): Promise<void> {
  if (typeof jkt !== 'string') throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token cnf.jkt is not a string');
  // RFC 9449 §7.2: a DPoP-bound token presented with the Bearer scheme must be refused, otherwise
  // a stolen token would work without the key.
  if (credentials.scheme !== 'DPoP') {
    throw new VerifierError('ERR_DPOP_BOUND_TOKEN_AS_BEARER', 'DPoP-bound access token must be sent with the DPoP scheme');
  }
  if (rules.dpop === undefined) throw new VerifierError('ERR_BINDING_UNSUPPORTED', 'DPoP-bound tokens are not accepted here');
  await verifyDpopProof({ method: request.method, url: request.url, proof: request.dpop, accessToken: credentials.token, jkt }, rules.dpop, now);
}

/** RFC 8705 §3: the presented certificate's SHA-256 thumbprint must equal `cnf.x5t#S256`. */
function checkCertificateBinding(x5t: unknown, certificate: ClientCertificateInput | undefined): void {
  if (typeof x5t !== 'string') throw new VerifierError('ERR_TOKEN_CLAIM_INVALID', 'access token cnf.x5t#S256 is not a string');
  if (certificate === undefined) {
    throw new VerifierError('ERR_CERTIFICATE_MISSING', 'access token is certificate-bound but no client certificate was presented');
  }
  if (certificateThumbprint(certificate) !== x5t) {
    throw new VerifierError('ERR_CERTIFICATE_MISMATCH', 'client certificate is not the one the token is bound to');
  }
}
