/**
 * An `@effect/platform` `HttpClient` whose requests run on Cistern's pooled
 * upstream connections ({@link UpstreamPool}). A request leases a connection
 * for exactly as long as its response is alive, body included: the lease
 * ends when the whole response has arrived (read, or buffered for you), when
 * the request or its body fails, or when the response is abandoned — its
 * scope closed (`HttpClient.withScope`), its stream interrupted, its fiber
 * interrupted. A response cut mid-body destroys its connection.
 *
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { Effect } from "effect"
 * import { UpstreamHttpClient } from "@cistern/platform-node"
 *
 * const program = Effect.gen(function* () {
 *   const client = (yield* HttpClient.HttpClient).pipe(HttpClient.filterStatusOk, HttpClient.retryTransient({ times: 2 }))
 *   const response = yield* client.get("http://127.0.0.1:8080/v1/models")
 *   return yield* response.json
 * }).pipe(Effect.provide(UpstreamHttpClient.layer({ maxPerKey: 10, maxTotal: 100, idleTimeout: "1 minute" })))
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as ClientRequest from "@effect/platform/HttpClientRequest"
import type * as ConfigError from "effect/ConfigError"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import * as internal from "./internal/httpClient.js"
import * as UpstreamPool from "./UpstreamPool.js"

/**
 * How requests map to pooled connections, and the client's own behaviour.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  /**
   * The HTTP CONNECT proxy requests go through: one for all, or chosen per
   * request (`undefined` for a direct connection). Each proxy is part of the
   * connection's key, so its connections are its own.
   */
  readonly proxy?:
    | string
    | URL
    | UpstreamPool.UpstreamProxy
    | ((request: ClientRequest.HttpClientRequest, url: URL) => string | URL | UpstreamPool.UpstreamProxy | undefined)
    | undefined
  /**
   * The credential a request speaks for (an API key, a user id), for
   * connections that must not be shared across credentials. Only its
   * fingerprint is kept. Default: none, connections are shared per origin
   * and proxy.
   */
  readonly credential?: ((request: ClientRequest.HttpClientRequest, url: URL) => string | undefined) | undefined
  /**
   * Retries a request whose connection failed (see
   * {@link UpstreamPool.isConnectionError}) before a response arrived, on a
   * fresh connection: `true` for exponential backoff from 100 ms with jitter
   * and at most 3 retries, or a schedule of your own. Requests with a
   * streamed body are never retried. Off by default: compose
   * `HttpClient.retry…` for your own policy; turn this on only for upstreams
   * where replaying a request is safe.
   */
  readonly retry?: boolean | Schedule.Schedule<unknown, unknown> | undefined
  /**
   * undici's wait for response headers, in milliseconds, for this client's
   * requests. Default: the pool's `client.headersTimeout` (an hour: bound
   * requests with `Effect.timeout`).
   */
  readonly headersTimeout?: number | undefined
  /** undici's bound on the gap between body chunks, in milliseconds. Default: the pool's `client.bodyTimeout` (none). */
  readonly bodyTimeout?: number | undefined
}

/**
 * Makes an `HttpClient` on the {@link UpstreamPool.UpstreamPool} in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: ClientOptions) => Effect.Effect<HttpClient.HttpClient, never, UpstreamPool.UpstreamPool> =
  internal.make

/**
 * Options of {@link layer}: the pool's and the client's.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends UpstreamPool.Options, ClientOptions {}

/**
 * Provides `HttpClient.HttpClient` on a new pool of upstream connections, and
 * that pool as {@link UpstreamPool.UpstreamPool} (for its stats, or a
 * `/healthz` that shows them).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<HttpClient.HttpClient | UpstreamPool.UpstreamPool> => {
  const [client, pool] = split(options)
  return layerWithPool(UpstreamPool.layer(pool), client)
}

/**
 * Options of {@link layerConfig}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions extends UpstreamPool.ConfigOptions, ClientOptions {}

/**
 * Like {@link layer}, with the pool's settings read from `Config`:
 *
 * ```ts
 * import { UpstreamHttpClient } from "@cistern/platform-node"
 * import { PoolConfig } from "@cistern/pool"
 *
 * export const UpstreamsFromEnv = UpstreamHttpClient.layerConfig({
 *   config: PoolConfig.settings({ maxPerKey: "MAX_KEEPALIVE_CONNECTIONS", maxTotal: "MAX_CONNECTIONS" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: ConfigOptions
): Layer.Layer<HttpClient.HttpClient | UpstreamPool.UpstreamPool, ConfigError.ConfigError> => {
  const [client, pool] = split(options)
  return layerWithPool(UpstreamPool.layerConfig(pool), client)
}

/** The client's options apart from the pool's (the pool has a `retry` of its own, for `use`). */
const split = <O extends ClientOptions>(options: O): [ClientOptions, Omit<O, keyof ClientOptions>] => {
  const { proxy, credential, retry, headersTimeout, bodyTimeout, ...pool } = options
  return [{ proxy, credential, retry, headersTimeout, bodyTimeout }, pool]
}

const layerWithPool = <E>(pool: Layer.Layer<UpstreamPool.UpstreamPool, E>, options: ClientOptions) =>
  Layer.provideMerge(Layer.effect(HttpClient.HttpClient, make(options)), pool)
