/**
 * The catalogue of deliberately bad requests: for one valid request to an API, tokens (and DPoP
 * proofs, and certificates) that are wrong in exactly one way, each with the answer an API that
 * enforces audience, lifetime, signature, binding and scope must give.
 *
 * Every bad token starts from a real token Tether just issued for the request and changes one
 * thing. Tokens whose signature should be valid are re-signed with Tether's own current key (same
 * `kid`, same header), so that the changed property is the only reason to refuse them.
 */
import { randomUUID } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, type JWTPayload } from 'jose';
import { scopesOf } from '../oauth/scope.js';
import { sha256Base64url } from '../text/sha256.js';
import type { PresentedCertificate } from './agents.js';
import { createDpopKey, dpopProof, type DpopKey, type DpopProofClaims } from './dpop.js';
import { hmacWithPublicKey, signJws, unsecuredJws, type TetherSigningKey } from './signing_key.js';
import type { IssuedAccessToken } from './token_client.js';
import { htuOf } from './token_fetch.js';

/** How the token under test is bound to its client. */
export type TokenBinding = 'mtls' | 'dpop' | 'bearer';

/** What a correct API answers. */
export type ExpectedAnswer =
  | { readonly outcome: 'accepted' }
  | { readonly outcome: 'rejected'; readonly status: 401 | 403; readonly errors: readonly string[] };

/** One HTTP request's credentials: what goes into `Authorization` and `DPoP`, and the TLS client certificate. */
export interface Presentation {
  /** The `Authorization` header, or none. */
  readonly authorization?: string;
  /** The `DPoP` header, or none. */
  readonly dpop?: string;
  /** The client certificate on the connection, or none. */
  readonly certificate?: PresentedCertificate;
}

/** The request the catalogue is made for. */
export interface TargetRequest {
  readonly method: string;
  readonly url: string;
}

/** One check of the catalogue. */
export interface BadTokenCase {
  /** Stable identifier, e.g. `wrong-aud`. */
  readonly id: string;
  /** The one property that is wrong (`valid` breaks nothing: it checks that a correct request is accepted). */
  readonly breaks: string;
  /** What is sent, in a few words. */
  readonly sent: string;
  readonly expect: ExpectedAnswer;
  /** Set when the case cannot be made here, saying why (it is then reported as skipped). */
  readonly skipped?: string;
  /**
   * The requests to send, in order, for `request`; the answer to the last one is judged. Proofs are
   * made fresh on every call.
   */
  present(request: TargetRequest): Promise<Presentation[]>;
}

/** What the catalogue is made from. */
export interface BadTokenInputs {
  /** A good token for the request under test, as Tether's token endpoint issued it. */
  readonly valid: IssuedAccessToken;
  /** Obtains another good token like `valid` (for checks that use one up, such as `revoked`). */
  readonly obtain: () => Promise<IssuedAccessToken>;
  /** Revokes a token at Tether (RFC 7009), as the client it was issued to. */
  readonly revoke: (token: IssuedAccessToken) => Promise<void>;
  /** Tether's current signing key; without it the checks that need Tether's signature are skipped. */
  readonly signingKey?: TetherSigningKey;
  /** Why there is no signing key (shown for the skipped checks). */
  readonly signingKeyUnavailable?: string;
  /** Another resource registered at the same Tether; without it `other-resource-aud` is skipped. */
  readonly otherResource?: string;
  /** The scopes the API needs for this request; without any, `scope-missing` is skipped. */
  readonly requiredScopes: readonly string[];
  /** SHA-256 thumbprint of a certificate that is not the client's (for `cnf-other-certificate`). */
  readonly otherCertificateThumbprint?: string;
}

/** An `aud` no API is registered for. */
export const FOREIGN_AUDIENCE = 'https://wrong-audience.invalid';
/** An `iss` that is not Tether. */
export const FOREIGN_ISSUER = 'https://untrusted-issuer.invalid';
/** How far in the past `expired` puts `exp`, and in the future `not-yet-valid` puts `nbf`: well beyond any sane leeway. */
export const EXPIRED_SECONDS_AGO = 600;
export const NOT_BEFORE_SECONDS_AHEAD = 120;

const INVALID_TOKEN = ['invalid_token'] as const;
const rejected = (status: 401 | 403, errors: readonly string[]): ExpectedAnswer => ({ outcome: 'rejected', status, errors });

/** The binding of a token, read from its `cnf` (RFC 8705 §3.1, RFC 9449 §6.1). */
export function bindingOf(claims: JWTPayload | undefined): TokenBinding {
  const cnf = claims?.cnf as Record<string, unknown> | undefined;
  if (typeof cnf?.jkt === 'string') return 'dpop';
  if (typeof cnf?.['x5t#S256'] === 'string') return 'mtls';
  return 'bearer';
}

/**
 * The catalogue for the request `inputs.valid` was issued for. `valid` comes first (a correct
 * request must be accepted, or nothing else means anything), `revoked` last.
 *
 * @throws TypeError when `inputs.valid` is not a JWT (opaque tokens can only be checked by introspection)
 */
export async function badTokenCatalogue(inputs: BadTokenInputs): Promise<BadTokenCase[]> {
  const { valid } = inputs;
  if (!valid.claims) throw new TypeError('the catalogue needs a JWT access token; this resource issues opaque tokens');
  const binding = bindingOf(valid.claims);
  const base = { header: decodeProtectedHeader(valid.accessToken) as Record<string, unknown>, payload: decodeJwt(valid.accessToken) as Record<string, unknown> };
  const presenter = createPresenter(valid, binding);
  const key = usableSigningKey(inputs, base.header);
  const signed = signedVariant(base, key, presenter);
  const unsigned = tokenCase(presenter);
  // Only the thumbprint of this key is used: a token bound to a key the client does not hold.
  const otherDpopKey = binding === 'dpop' ? await createDpopKey() : undefined;
  const now = () => Math.floor(Date.now() / 1000);

  const cases: BadTokenCase[] = [
    {
      id: 'valid', breaks: 'nothing (control: a correct request)', sent: `the token as issued, ${presenter.how}`,
      expect: { outcome: 'accepted' },
      present: async (request) => [await presenter.present(valid.accessToken, request)],
    },
    signed({
      id: 'wrong-aud', breaks: 'aud', sent: `aud ${FOREIGN_AUDIENCE}`,
      payload: (payload) => ({ ...payload, aud: FOREIGN_AUDIENCE }),
    }),
    inputs.otherResource === undefined
      ? skippedCase('other-resource-aud', 'aud', 'no other resource is known at this Tether')
      : signed({
        id: 'other-resource-aud', breaks: 'aud', sent: `aud ${inputs.otherResource} (another API's token)`,
        payload: (payload) => ({ ...payload, aud: inputs.otherResource }),
      }),
    signed({
      id: 'expired', breaks: 'exp', sent: `exp ${EXPIRED_SECONDS_AGO} s ago (iat moved alike)`,
      payload: (payload) => shiftedTimes(payload, now() - EXPIRED_SECONDS_AGO - Number(payload.exp)),
    }),
    signed({
      id: 'not-yet-valid', breaks: 'nbf', sent: `nbf ${NOT_BEFORE_SECONDS_AHEAD} s ahead`,
      payload: (payload) => notBefore(payload, now() + NOT_BEFORE_SECONDS_AHEAD),
    }),
    signed({
      id: 'wrong-iss', breaks: 'iss', sent: `iss ${FOREIGN_ISSUER}`,
      payload: (payload) => ({ ...payload, iss: FOREIGN_ISSUER }),
    }),
    signed({
      id: 'typ-jwt', breaks: 'typ', sent: 'typ JWT instead of at+jwt',
      header: (header) => ({ ...header, typ: 'JWT' }),
    }),
    unsigned({
      id: 'alg-none', breaks: 'alg', sent: 'alg none, empty signature',
      token: async () => unsecuredJws(base.header, base.payload),
    }),
    'reason' in key
      ? skippedCase('hs256-public-key', 'alg', key.reason)
      : unsigned({
        id: 'hs256-public-key', breaks: 'alg', sent: 'HS256 keyed with Tether\'s public key',
        token: async () => hmacWithPublicKey(base.header, base.payload, key.publicJwk),
      }),
    signed({
      id: 'unknown-kid', breaks: 'kid', sent: 'kid not in Tether\'s JWKS',
      header: (header) => ({ ...header, kid: `unknown-${randomUUID()}` }),
    }),
    unsigned({
      id: 'foreign-key', breaks: 'signature', sent: 'signed by a foreign key, Tether\'s kid',
      token: async () => signJws(base.header, base.payload, (await generateKeyPair(String(base.header.alg))).privateKey),
    }),
    signed({
      id: 'missing-cnf', breaks: 'cnf', sent: 'no cnf claim',
      payload: ({ cnf: _cnf, ...payload }) => payload,
      ...(binding === 'bearer' ? { skipped: 'the token under test is not sender-constrained' } : {}),
    }),
    ...bindingCases(binding, { valid, presenter, signed, inputs, otherDpopKey }),
    scopeCase(inputs, signed),
    {
      id: 'revoked', breaks: 'revocation', sent: 'a token revoked at Tether (RFC 7009)',
      expect: rejected(401, INVALID_TOKEN),
      present: async (request) => {
        const token = await inputs.obtain();
        await inputs.revoke(token);
        return [await createPresenter(token, binding).present(token.accessToken, request)];
      },
    },
  ];
  return cases;
}

// ---------------------------------------------------------------------------------------------------
// Presenting a token the way its client would

interface Presenter {
  /** How a good client presents this token, in words. */
  readonly how: string;
  /** The token as its client presents it; `proof` overrides claims of the DPoP proof. */
  present(token: string, request: TargetRequest, proof?: Partial<DpopProofClaims>): Promise<Presentation>;
}

function createPresenter(holder: IssuedAccessToken, binding: TokenBinding): Presenter {
  const { certificate, dpopKey } = holder.credentials;
  const connection = certificate ? { certificate } : {};
  if (binding === 'dpop') {
    if (!dpopKey) throw new TypeError('a DPoP-bound token needs its DPoP key');
    return {
      how: 'with a DPoP proof',
      async present(token, request, proof = {}) {
        return {
          ...connection,
          authorization: `DPoP ${token}`,
          dpop: await dpopProof(dpopKey, { htm: request.method, htu: htuOf(request.url), accessToken: token, ...proof }),
        };
      },
    };
  }
  return {
    how: certificate ? 'with its client certificate' : 'as a bearer token',
    async present(token) {
      return { ...connection, authorization: `Bearer ${token}` };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Building cases

interface TokenParts {
  readonly header: Record<string, unknown>;
  readonly payload: Record<string, unknown>;
}

interface SignedCaseSpec {
  readonly id: string;
  readonly breaks: string;
  readonly sent: string;
  readonly header?: (header: Record<string, unknown>) => Record<string, unknown>;
  readonly payload?: (payload: Record<string, unknown>) => Record<string, unknown>;
  readonly expect?: ExpectedAnswer;
  readonly skipped?: string;
}

type SignedCaseFactory = (spec: SignedCaseSpec) => BadTokenCase;

/**
 * The signing key, if it is the one that signed the valid token: a key from another Tether's database
 * (or one rotated since) would make every re-signed token wrong in a second way.
 */
function usableSigningKey(inputs: BadTokenInputs, header: Record<string, unknown>): TetherSigningKey | { reason: string } {
  const key = inputs.signingKey;
  if (key === undefined) return { reason: inputs.signingKeyUnavailable ?? 'Tether\'s signing key is not available (no access to its database)' };
  if (key.kid !== header.kid) return { reason: `the signing key from Tether's database (kid ${key.kid}) did not sign the token (kid ${String(header.kid)})` };
  return key;
}

/** Cases whose token is the valid one with one change, re-signed with Tether's key. */
function signedVariant(base: TokenParts, key: TetherSigningKey | { reason: string }, presenter: Presenter): SignedCaseFactory {
  return (spec) => {
    const expect = spec.expect ?? rejected(401, INVALID_TOKEN);
    if ('reason' in key) return skippedCase(spec.id, spec.breaks, key.reason, expect);
    if (spec.skipped !== undefined) return skippedCase(spec.id, spec.breaks, spec.skipped, expect);
    const forge = () => signJws((spec.header ?? same)(base.header), (spec.payload ?? same)(base.payload), key.privateKey);
    return {
      id: spec.id,
      breaks: spec.breaks,
      sent: `${spec.sent}; re-signed by Tether`,
      expect,
      present: async (request) => {
        const token = await forge();
        return [await presenter.present(token, request)];
      },
    };
  };
}

/** Cases whose token is not signed by Tether's key at all. */
function tokenCase(presenter: Presenter) {
  return (spec: { id: string; breaks: string; sent: string; token: () => Promise<string> }): BadTokenCase => ({
    id: spec.id,
    breaks: spec.breaks,
    sent: spec.sent,
    expect: rejected(401, INVALID_TOKEN),
    present: async (request) => [await presenter.present(await spec.token(), request)],
  });
}

function skippedCase(id: string, breaks: string, reason: string, expect: ExpectedAnswer = rejected(401, INVALID_TOKEN)): BadTokenCase {
  return { id, breaks, sent: '-', expect, skipped: reason, present: async () => [] };
}

const same = <T>(value: T) => value;

/** `iat`, `nbf` and `exp` moved by `delta` seconds together: a token issued earlier, same lifetime. */
function shiftedTimes(payload: Record<string, unknown>, delta: number): Record<string, unknown> {
  const shifted = { ...payload };
  for (const claim of ['iat', 'nbf', 'exp'] as const) {
    if (typeof shifted[claim] === 'number') shifted[claim] = (shifted[claim] as number) + delta;
  }
  return shifted;
}

/** `nbf` in the future; `exp` is moved only if it would otherwise come first (a token never valid). */
function notBefore(payload: Record<string, unknown>, nbf: number): Record<string, unknown> {
  const exp = Number(payload.exp);
  if (exp > nbf) return { ...payload, nbf };
  const lifetime = exp - Number(payload.iat);
  return { ...payload, nbf, exp: nbf + (lifetime > 0 ? lifetime : 60) };
}

interface BindingCaseContext {
  readonly valid: IssuedAccessToken;
  readonly presenter: Presenter;
  readonly otherDpopKey: DpopKey | undefined;
  readonly signed: SignedCaseFactory;
  readonly inputs: BadTokenInputs;
}

/** The sender-constraint checks for the token's binding (none for bearer tokens). */
function bindingCases(binding: TokenBinding, context: BindingCaseContext): BadTokenCase[] {
  if (binding === 'mtls') return mtlsCases(context);
  if (binding === 'dpop') return dpopCases(context);
  return [];
}

function mtlsCases({ valid, presenter, signed, inputs }: BindingCaseContext): BadTokenCase[] {
  return [
    inputs.otherCertificateThumbprint === undefined
      ? skippedCase('cnf-other-certificate', 'cnf', 'no other certificate is available')
      : signed({
        id: 'cnf-other-certificate', breaks: 'cnf', sent: 'cnf x5t#S256 of another certificate',
        payload: (payload) => ({ ...payload, cnf: { 'x5t#S256': inputs.otherCertificateThumbprint } }),
      }),
    {
      id: 'no-certificate', breaks: 'binding', sent: 'no client certificate on the connection',
      expect: rejected(401, INVALID_TOKEN),
      present: async (request) => {
        const { certificate: _certificate, ...withoutCertificate } = await presenter.present(valid.accessToken, request);
        return [withoutCertificate];
      },
    },
  ];
}

function dpopCases({ valid, presenter, signed, otherDpopKey }: BindingCaseContext): BadTokenCase[] {
  const proofCase = (id: string, sent: string, proof: (request: TargetRequest) => Partial<DpopProofClaims>): BadTokenCase => ({
    id, breaks: 'DPoP proof', sent,
    expect: rejected(401, ['invalid_dpop_proof']),
    present: async (request) => [await presenter.present(valid.accessToken, request, proof(request))],
  });
  return [
    signed({
      id: 'cnf-other-key', breaks: 'cnf', sent: 'cnf jkt of another key',
      payload: (payload) => ({ ...payload, cnf: { jkt: otherDpopKey!.thumbprint } }),
      // RFC 9449 §7.1 leaves the code open: the proof is valid, the token is bound elsewhere.
      expect: rejected(401, ['invalid_token', 'invalid_dpop_proof']),
    }),
    {
      id: 'dpop-as-bearer', breaks: 'binding', sent: 'Bearer scheme, no DPoP proof',
      expect: rejected(401, ['invalid_token', 'invalid_request']),
      present: async () => [{ ...(valid.credentials.certificate ? { certificate: valid.credentials.certificate } : {}), authorization: `Bearer ${valid.accessToken}` }],
    },
    proofCase('proof-wrong-htm', 'proof htm of another method', (request) => ({ htm: request.method === 'POST' ? 'GET' : 'POST' })),
    proofCase('proof-wrong-htu', 'proof htu of another URL', (request) => ({ htu: `${new URL(request.url).origin}/not-this-resource` })),
    proofCase('proof-wrong-ath', 'proof ath of another token', () => ({ ath: sha256Base64url(`another-token-${randomUUID()}`) })),
    {
      id: 'proof-replayed', breaks: 'DPoP proof', sent: 'one proof used twice (second judged)',
      expect: rejected(401, ['invalid_dpop_proof']),
      present: async (request) => {
        const once = await presenter.present(valid.accessToken, request);
        return [once, once];
      },
    },
  ];
}

function scopeCase(inputs: BadTokenInputs, signed: SignedCaseFactory): BadTokenCase {
  const required = new Set(inputs.requiredScopes);
  return signed({
    id: 'scope-missing', breaks: 'scope', sent: `scope without ${[...required].join(' ') || '-'}`,
    payload: ({ scope, ...payload }) => {
      const kept = scopesOf(String(scope ?? '')).filter((value) => !required.has(value));
      return kept.length > 0 ? { ...payload, scope: kept.join(' ') } : payload;
    },
    expect: rejected(403, ['insufficient_scope']),
    ...(required.size === 0 ? { skipped: 'the request needs no scope' } : {}),
  });
}
