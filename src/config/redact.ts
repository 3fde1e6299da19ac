/**
 * What a configuration error may show. Redaction is by structure, before anything is printed: a
 * value under a secret-named key, a JWK's private members, a URL's password. As a second line of
 * defence, every secret found that way (and the secret environment variables) is scrubbed from the
 * finished message, whatever put it there.
 */

export type ConfigPath = readonly (string | number)[];

/** Keys whose value is secret wherever they appear (`secret`, `encryptionSecret`, `password`, …). */
const SECRET_KEY = /secret|password|passphrase|passwd|credential|private|api[_-]?key|token$/i;

/** JWK members holding private key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1). */
const PRIVATE_JWK_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);

/** Environment variables whose whole value is secret. */
const SECRET_VARIABLES = ['TETHER_KEY_ENCRYPTION_SECRET'];
/** Environment variables that may carry a URL with a password. */
const URL_VARIABLES = ['DATABASE_URL'];

const REDACTED = '[redacted]';
/** Shorter "secrets" would scrub ordinary words out of messages; no usable secret is this short. */
const MIN_SCRUBBED_LENGTH = 4;

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The value at `path` in `raw`, or undefined. */
export function valueAt(raw: unknown, path: ConfigPath): unknown {
  let current: unknown = raw;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}

/**
 * Whether the value at `path` is secret: a secret-named key anywhere on the path, or a private
 * member of a JWK (an object with `kty`, or any object under `jwks`).
 */
export function isSecretPath(raw: unknown, path: ConfigPath): boolean {
  if (path.some((key) => typeof key === 'string' && SECRET_KEY.test(key))) return true;
  const leaf = path.at(-1);
  if (typeof leaf !== 'string' || !PRIVATE_JWK_MEMBERS.has(leaf)) return false;
  const parent = valueAt(raw, path.slice(0, -1));
  return (isRecord(parent) && 'kty' in parent) || path.includes('jwks');
}

/** `scheme://user:***@host/…` for a URL with a password; anything else unchanged. */
export function redactUrl(value: string): string {
  const url = URL.parse(value);
  if (!url?.password) return value;
  url.password = '***';
  return url.href;
}

function urlPassword(value: string): string | undefined {
  const password = URL.parse(value)?.password;
  return password ? decodeURIComponent(password) : undefined;
}

/** Every secret string in the configuration and the environment, for {@link scrubSecrets}. */
export function secretValuesOf(raw: unknown, env: NodeJS.ProcessEnv): string[] {
  const found = new Set<string>();
  const add = (value: string | undefined) => {
    if (value && value.length >= MIN_SCRUBBED_LENGTH) found.add(value);
  };
  const walk = (value: unknown, path: (string | number)[], secret: boolean) => {
    if (typeof value === 'string') {
      if (secret) add(value);
      add(urlPassword(value));
      return;
    }
    if (typeof value === 'number' && secret) add(String(value));
    if (value === null || typeof value !== 'object') return;
    for (const [key, child] of Object.entries(value)) {
      add(urlPassword(key));
      const at = [...path, Array.isArray(value) ? Number(key) : key];
      walk(child, at, secret || isSecretPath(raw, at));
    }
  };
  walk(raw, [], false);
  for (const variable of SECRET_VARIABLES) add(env[variable]);
  for (const variable of URL_VARIABLES) add(urlPassword(env[variable] ?? ''));
  return [...found].sort((a, b) => b.length - a.length);
}

/** Replaces every occurrence of a known secret (and of its URL-encoded form) with `[redacted]`. */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  let scrubbed = text;
  for (const secret of secrets) {
    for (const form of new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)])) {
      scrubbed = scrubbed.split(form).join(REDACTED);
    }
  }
  return scrubbed;
}

/**
 * How a bad value is shown after "got": scalars as they are (URLs without their password), lists and
 * mappings only by their size and key names, secrets not at all (undefined).
 */
export function describeValue(raw: unknown, path: ConfigPath): string | undefined {
  const value = valueAt(raw, path);
  if (value === undefined || isSecretPath(raw, path)) return undefined;
  if (typeof value === 'string') {
    const shown = JSON.stringify(redactUrl(value));
    return shown.length > 80 ? `${shown.slice(0, 77)}…"` : shown;
  }
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (isRecord(value)) {
    const keys = Object.keys(value);
    return keys.length === 0 ? 'an empty mapping' : `a mapping with keys ${keys.slice(0, 8).join(', ')}${keys.length > 8 ? ', …' : ''}`;
  }
  return String(value);
}

/** `clients[0].auth.secret`; URL segments (resource keys) without their password. */
export function formatPath(path: ConfigPath): string {
  return path.reduce<string>((text, key) => {
    if (typeof key === 'number') return `${text}[${key}]`;
    const shown = redactUrl(key);
    return text ? `${text}.${shown}` : shown;
  }, '');
}
