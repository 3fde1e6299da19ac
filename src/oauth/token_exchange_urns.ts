/** RFC 8693 §2.1: the `grant_type` of a token exchange request. */
export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 8693 §3 token type identifiers Tether understands. */
export const TOKEN_TYPE = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  /** Accepted as a subject token from trusted external issuers only (docs/federation.md). */
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
} as const;
