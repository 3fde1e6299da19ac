/**
 * The shortest key-encryption secret accepted, everywhere: the configuration (schema.ts) and the
 * encryption itself (keys/key_encryption.ts). The secret is HKDF input keying material, not a
 * password: 32 random bytes, e.g. `openssl rand -base64 32`.
 */
export const MINIMUM_SECRET_LENGTH = 32;
