/**
 * The claims Tether adds to an access token through oidc-provider's `extra` property, in one place:
 * token exchange writes them when it mints (grants/issuance_steps.ts), oidc-provider's hooks put them
 * into a JWT (create_provider.ts), and an opaque token stored by the adapter keeps them for when it
 * is presented again (grants/token_exchange/resolve_subject.ts). oidc-provider types a token's
 * `extra` loosely; every read of it goes through {@link extraClaimsOf}.
 */

/**
 * RFC 8693 §4.1 `sub` and `act` of an exchanged token; `may_act` (§4.4) as found on a stored one;
 * `external_subject` of a token exchanged from a trusted external issuer's (docs/federation.md).
 */
export interface ExtraClaims {
  sub?: string;
  act?: Record<string, unknown>;
  may_act?: unknown;
  external_subject?: { iss: string; sub: string };
}

/** The token's extra claims, with `sub` only when it is a string. */
export function extraClaimsOf(token: object): ExtraClaims {
  const extra = (token as { extra?: unknown }).extra;
  if (typeof extra !== 'object' || extra === null) return {};
  const { sub, act, may_act: mayAct, external_subject: externalSubject } = extra as Record<string, unknown>;
  return {
    ...(typeof sub === 'string' ? { sub } : {}),
    ...(act !== undefined ? { act: act as Record<string, unknown> } : {}),
    ...(mayAct !== undefined ? { may_act: mayAct } : {}),
    // Written only by Tether's own mint (federation/subject_tokens.ts externalSubjectClaim).
    ...(externalSubject !== undefined ? { external_subject: externalSubject as ExtraClaims['external_subject'] } : {}),
  };
}

/** Sets the extra claims a new token carries (nothing when there are none). */
export function setExtraClaims(token: object, claims: ExtraClaims): void {
  const extra = Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined));
  if (Object.keys(extra).length > 0) (token as { extra?: ExtraClaims }).extra = extra;
}
