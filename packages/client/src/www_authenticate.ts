/**
 * `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as far as a client needs them: the scheme of each
 * challenge and its parameters, e.g. `DPoP error="use_dpop_nonce"` or `Bearer error="invalid_token"`.
 *
 * @module
 */

/** One challenge: its scheme (lower-cased) and its auth-params (names lower-cased). */
export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/**
 * Parses a header value that may hold several challenges (several header lines arrive joined by
 * commas). Malformed parts end the parse: what was read before them is returned.
 */
export function parseChallenges(header: string | null): Challenge[] {
  if (header === null) return [];
  const challenges: Challenge[] = [];
  let position = 0;

  const skip = (pattern: RegExp) => {
    while (position < header.length && pattern.test(header[position]!)) position += 1;
  };
  const readToken = () => {
    const start = position;
    while (position < header.length && TOKEN_CHAR.test(header[position]!)) position += 1;
    return header.slice(start, position);
  };
  const readQuoted = (): string | undefined => {
    let value = '';
    position += 1; // opening quote
    while (position < header.length) {
      const char = header[position]!;
      position += 1;
      if (char === '"') return value;
      if (char === '\\') {
        if (position >= header.length) return undefined;
        value += header[position]!;
        position += 1;
      } else {
        value += char;
      }
    }
    return undefined;
  };
  // Is the text at `position` an auth-param (`name = …`) rather than the next challenge's scheme?
  const atParam = () => /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=(?!=)/.test(header.slice(position));

  for (;;) {
    skip(/[ \t,]/);
    if (position >= header.length) return challenges;
    const scheme = readToken();
    if (scheme === '') return challenges;
    const params: Record<string, string> = {};
    challenges.push({ scheme: scheme.toLowerCase(), params });
    skip(/[ \t]/);
    // token68 (e.g. `Negotiate abc==`): not a parameter list; skip it.
    if (!atParam()) {
      if (/^[A-Za-z0-9\-._~+/]+=*[ \t]*(,|$)/.test(header.slice(position))) {
        skip(/[A-Za-z0-9\-._~+/=]/);
      }
      continue;
    }
    while (atParam()) {
      const name = readToken().toLowerCase();
      skip(/[ \t]/);
      position += 1; // '='
      skip(/[ \t]/);
      const value = header[position] === '"' ? readQuoted() : readToken();
      if (value === undefined) return challenges;
      if (!(name in params)) params[name] = value;
      skip(/[ \t]/);
      if (header[position] !== ',') break;
      position += 1;
      skip(/[ \t,]/);
    }
  }
}

/** The `error` of the first challenge of `scheme` (case-insensitive) that names one. */
export function challengeError(challenges: readonly Challenge[], scheme?: string): string | undefined {
  return challenges.find((challenge) => (scheme === undefined || challenge.scheme === scheme.toLowerCase()) && challenge.params.error !== undefined)?.params.error;
}
