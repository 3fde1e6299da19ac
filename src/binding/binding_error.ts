/** Codes of {@link BindingError}. */
export type BindingErrorCode =
  /** A trusted proxy sent a client-certificate header that is not a certificate in the expected form. */
  | 'ERR_CLIENT_CERT_HEADER'
  /** The trusted-proxy configuration is invalid (an operator error, found before any request is read). */
  | 'ERR_TRUSTED_PROXY_CONFIG';

/**
 * The one error type of `src/binding/`: callers branch on `code`, never on the message. The message
 * says what was wrong without echoing header contents.
 */
export class BindingError extends Error {
  override readonly name = 'BindingError';

  constructor(
    readonly code: BindingErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
