// The only module that reaches into oidc-provider's internals (pinned version, see package.json).
//
// DPoP: oidc-provider makes and checks the DPoP nonces (RFC 9449 §8) of its built-in grants' proofs
// but does not export them; the proofs of our own grants (binding/dpop_token_proof.ts) use the same
// nonces, so that a nonce oidc-provider issued is accepted by them and the other way round.
//
// Signing keys: oidc-provider takes them once, at construction (`jwks`); Tether's keys change while
// it runs (keys/live_signing_keys.ts). The provider signs with instance(provider).keystore, looked
// up afresh for every token (lib/models/formats/jwt.js), and serves instance(provider).jwks at
// jwks_uri (lib/actions/jwks.js). Its own initializer (lib/helpers/initialize_keystore.js:
// validation, `alg` and `use` defaults) rebuilds both; the published set is then replaced.
//
// Clients: oidc-provider takes static clients once, at construction, and looks every client up
// through the static Client.find (lib/models/client.js; client authentication, introspection).
// Tether's clients change on a configuration reload, and each request must see the clients of the
// configuration it started with: Client.find is replaced by a lookup in that snapshot, of Client
// instances built (and so validated) when the snapshot is made, as oidc-provider builds static ones.
// @ts-expect-error -- deep import of an untyped module of the pinned oidc-provider version
import initializeKeystore from 'oidc-provider/lib/helpers/initialize_keystore.js';
// @ts-expect-error -- deep import of an untyped module of the pinned oidc-provider version
import providerInternals from 'oidc-provider/lib/helpers/weak_cache.js';
import type { JWK } from 'jose';
import type { Client, ClientMetadata, KoaContextWithOIDC, Provider } from 'oidc-provider';
import type { DpopNonces } from '../binding/dpop_token_proof.js';
import { signingKeyOf } from './node_crypto_signing_key.js';

/** oidc-provider's DPoP nonces (lib/provider.js, from `features.dPoP.nonceSecret`); undefined without a secret. */
export function dpopNoncesOf(provider: Provider): DpopNonces | undefined {
  return (providerInternals as (p: Provider) => { DPoPNonces?: DpopNonces })(provider).DPoPNonces;
}

/**
 * Runs `check` as soon as oidc-provider has found the client a request names, before it checks the
 * client's credentials (shared/client_auth.js assigns the Client entity, then compares the secret or
 * verifies the assertion). oidc-provider has no configuration hook at that point; its own
 * client-based CORS check listens there too. An error thrown by `check` is the route's answer.
 */
export function beforeClientCredentialsCheck(provider: Provider, check: (ctx: KoaContextWithOIDC) => void): void {
  type Context = { ctx: KoaContextWithOIDC; entity(key: string, value: unknown): void };
  const prototype = provider.OIDCContext.prototype as unknown as Context;
  const assign = prototype.entity;
  prototype.entity = function entityThenCheck(this: Context, key: string, value: unknown): void {
    assign.call(this, key, value);
    if (key === 'Client') check(this.ctx);
  };
}

/**
 * Calls `inspect` with a request's parameters as soon as oidc-provider has assembled them
 * (shared/assemble_params.js assigns `ctx.oidc.params`), before client authentication reads them;
 * `inspect` may change them or throw the route's answer. Federated client authentication
 * (federation/client_authentication.ts) takes a trusted issuer's assertion out here, because
 * oidc-provider would otherwise require its `sub` to be the client id (RFC 7523 §3).
 */
export function onParamsAssembled(provider: Provider, inspect: (ctx: KoaContextWithOIDC, params: Record<string, unknown>) => void): void {
  type Context = { ctx: KoaContextWithOIDC };
  const assigned = new WeakMap<object, unknown>();
  Object.defineProperty(provider.OIDCContext.prototype, 'params', {
    configurable: true,
    get(this: Context) {
      return assigned.get(this);
    },
    set(this: Context, params: unknown) {
      if (typeof params === 'object' && params !== null) inspect(this.ctx, params as Record<string, unknown>);
      assigned.set(this, params);
    },
  });
}

/**
 * Wraps the provider's client lookup (Client.find, as lookUpClientsWith installed it). Client
 * authentication (shared/client_auth.js) awaits it right before it checks the credentials; `around`
 * gets the request it runs for (`requestOf`: the caller passes oidc-provider's `Provider.ctx`) and
 * may throw its answer.
 */
export function aroundClientLookup<C>(
  provider: Provider,
  requestOf: () => KoaContextWithOIDC | undefined,
  around: (ctx: KoaContextWithOIDC | undefined, id: string, find: (id: string) => Promise<C | undefined>) => Promise<C | undefined>,
): void {
  const model = provider.Client as unknown as { find(id: string): Promise<C | undefined> };
  const find = model.find.bind(model);
  model.find = (id: string) => around(requestOf(), id, find);
}

/**
 * Makes `provider` sign with `signing` (private JWKs; the first key of an algorithm signs; ES256 ones
 * through node:crypto, node_crypto_signing_key.ts) and publish `published` (public JWKs) at jwks_uri
 * from now on. Synchronous: no request sees half a change.
 */
export function installSigningKeys(provider: Provider, keys: { signing: JWK[]; published: JWK[] }): void {
  if (keys.signing.length === 0) throw new Error('refusing to install an empty signing key set');
  (initializeKeystore as (this: Provider, jwks: { keys: unknown[] }) => void).call(provider, { keys: keys.signing.map(signingKeyOf) });
  const internals = (providerInternals as (p: Provider) => { jwks: { keys: JWK[] } })(provider);
  internals.jwks = { keys: keys.published.map(publicMembersOf) };
}

/** The members oidc-provider itself publishes of a key (lib/helpers/initialize_keystore.js): never a private one. */
function publicMembersOf(jwk: JWK): JWK {
  const { kty, use, key_ops: keyOps, kid, alg, crv, e, n, x, y, x5c } = jwk;
  const members = { kty, use, key_ops: keyOps, kid, alg, crv, e, n, x, x5c, y };
  return Object.fromEntries(Object.entries(members).filter(([, value]) => value !== undefined)) as JWK;
}

/**
 * oidc-provider's Client for `metadata`, validated by its own schema as a static client is at first
 * use (lib/models/client.js `find`): throws InvalidClientMetadata naming the problem.
 */
export function buildProviderClient(provider: Provider, metadata: ClientMetadata): Client {
  const client = new (provider.Client as unknown as new (metadata: ClientMetadata) => Client)(metadata);
  // As for static clients: not manageable through dynamic registration.
  Object.defineProperty(client, 'noManage', { value: true });
  return client;
}

/** Makes every client lookup of `provider` answer from `find` (undefined: no such client). */
export function lookUpClientsWith(provider: Provider, find: (id: string) => Client | undefined): void {
  (provider.Client as unknown as { find(id: unknown): Promise<Client | undefined> }).find = async (id) => (typeof id === 'string' && id.length > 0 ? find(id) : undefined);
}
