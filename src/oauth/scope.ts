/**
 * RFC 6749 §3.3: `scope` is a list of space-delimited, case-sensitive strings. The one splitter of
 * the server: empty entries (two spaces, a leading or trailing one) are no scopes.
 */
export function scopesOf(scope: string | undefined): string[] {
  return scope === undefined ? [] : scope.split(' ').filter((item) => item !== '');
}
