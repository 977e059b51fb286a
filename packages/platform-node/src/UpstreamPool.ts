/**
 * Pooled upstream HTTP connections: a Cistern keyed pool of undici `Client`s,
 * one socket each, per upstream key (origin × proxy × credential
 * fingerprint). The pool's per-key and total limits, idle expiry, validation,
 * health checks, circuit breaker and metrics govern real sockets: a pool item
 * is a socket, and its finalizer is the only place that socket is closed.
 *
 * Most applications use it through {@link UpstreamHttpClient}; lease a
 * connection directly for undici's own API:
 *
 * ```ts
 * import { Effect } from "effect"
 * import { UpstreamPool } from "@cistern/platform-node"
 *
 * const program = Effect.gen(function* () {
 *   const pool = yield* UpstreamPool.UpstreamPool
 *   const key = UpstreamPool.key("http://127.0.0.1:8080", { proxy: "http://127.0.0.1:3128" })
 *   return yield* pool.use(key, (connection) =>
 *     Effect.promise(async () => {
 *       const response = await connection.dispatcher.request({ method: "GET", path: "/" })
 *       return response.body.text() // read within the lease
 *     })
 *   )
 * }).pipe(Effect.provide(UpstreamPool.layer({ maxPerKey: 10, maxTotal: 100 })))
 * ```
 *
 * @since 0.1.0
 */
import type * as KeyedPool from "@cistern/pool/KeyedPool"
import type * as PoolConfig from "@cistern/pool/PoolConfig"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type { buildConnector, Client, Dispatcher } from "undici"
import * as connectionError from "./internal/connectionError.js"
import * as internalRequest from "./internal/request.js"
import * as upstreamKey from "./internal/upstreamKey.js"
import * as internal from "./internal/upstreamPool.js"

/**
 * An HTTP CONNECT proxy. Credentials in the URL's user info
 * (`http://user:pass@proxy:3128`) are sent as `Proxy-Authorization: Basic …`.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpstreamProxy {
  /** The proxy's URL, `http:` or `https:`. */
  readonly uri: string
  /** Extra headers of the CONNECT request (for example a `Proxy-Authorization` token). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * Which connections a request may use: those to the same origin, through
 * the same proxy (with the same proxy credentials), for the same credential.
 * Make one with {@link key}; two keys with the same `id` share connections
 * and limits.
 *
 * @since 0.1.0
 * @category models
 */
export interface UpstreamKey {
  /** `protocol://host[:port]` of the upstream. */
  readonly origin: string
  /** The CONNECT proxy the connections go through, if any. */
  readonly proxy: UpstreamProxy | undefined
  /** A one-way fingerprint of the caller's credential; `""` for none. */
  readonly credential: string
  /** The key's identity: origin, proxy origin and credential fingerprints. Never holds a secret. */
  readonly id: string
}

/**
 * Makes the key of an upstream. `credential` (an API key, a token, a user
 * id) is hashed at once: connections of different credentials are never
 * shared, and the raw value is kept nowhere. Throws a `TypeError` for an
 * origin that is not `http:` or `https:`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const key: (
  origin: string | URL,
  options?: {
    readonly proxy?: string | URL | UpstreamProxy | undefined
    readonly credential?: string | undefined
  }
) => UpstreamKey = upstreamKey.make

/**
 * How a key is shown in stats, errors, logs and metrics: its origin, the
 * proxy's host and the start of the credential fingerprint.
 *
 * @since 0.1.0
 * @category getters
 */
export const describeKey: (key: UpstreamKey) => string = upstreamKey.describeKey

/**
 * A pooled connection: one socket to an upstream (through its proxy, if the
 * key has one) and the undici dispatcher that speaks HTTP/1.1 on it. Use it
 * only within its lease, and read a response's body before the lease ends.
 *
 * @since 0.1.0
 * @category models
 */
export interface Connection {
  readonly key: UpstreamKey
  /** An undici dispatcher bound to this connection's one socket; it never reconnects. */
  readonly dispatcher: Dispatcher
  /** The address of the peer the socket is connected to (the proxy, for a tunnel). */
  readonly remoteAddress: string | undefined
}

/**
 * Opening a connection failed: the TCP or TLS connect, the CONNECT to the
 * proxy, or the proxy refused the tunnel (`proxyStatus`, for example 407).
 * It counts for the key's circuit breaker.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpstreamConnectError extends Data.TaggedError("UpstreamConnectError")<{
  /** The key, as {@link describeKey} shows it. */
  readonly upstream: string
  readonly reason: "Connect" | "ProxyRefused"
  /** The proxy's answer to CONNECT when it was not 200. */
  readonly proxyStatus?: number | undefined
  readonly cause: unknown
}> {
  override get message(): string {
    return this.reason === "ProxyRefused"
      ? `the proxy refused a tunnel to ${this.upstream} (${this.proxyStatus})`
      : `connecting to ${this.upstream} failed: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/**
 * A request sent with {@link request} failed before its response's headers
 * arrived. Its `cause` is undici's error; {@link isConnectionError} tells
 * whether the connection broke.
 *
 * @since 0.1.0
 * @category errors
 */
export class UpstreamRequestError extends Data.TaggedError("UpstreamRequestError")<{
  /** The key, as {@link describeKey} shows it. */
  readonly upstream: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `a request to ${this.upstream} failed: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/**
 * The options of {@link request}: undici's request options (`method`,
 * `path`, `headers`, `body`, `headersTimeout`, `bodyTimeout`…). The origin
 * is the connection's; aborting is the scope's.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestOptions = Omit<Dispatcher.RequestOptions, "origin" | "signal">

/**
 * Sends a request on a leased connection and ties its response to the
 * current scope — the lease's scope, in `pool.get` or in a streaming helper
 * that runs inside the lease. If the scope closes before the response has
 * ended (its body unread, cut short, the fiber interrupted), the request is
 * aborted and the connection destroyed when the lease ends; a response that
 * ended whole leaves the connection to be reused. A response that fails, or
 * announces `Connection: close`, always destroys its connection.
 *
 * ```ts
 * import { UpstreamPool } from "@cistern/platform-node"
 * import { Effect } from "effect"
 *
 * declare const body: string
 * const key = UpstreamPool.key("http://127.0.0.1:8080")
 *
 * export const answer = Effect.gen(function* () {
 *   const pool = yield* UpstreamPool.UpstreamPool
 *   const connection = yield* pool.get(key)
 *   const response = yield* UpstreamPool.request(connection, { method: "POST", path: "/v1/chat/completions", body })
 *   return yield* Effect.promise(() => response.body.text())
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const request: (
  connection: Connection,
  options: RequestOptions
) => Effect.Effect<Dispatcher.ResponseData, UpstreamRequestError, Scope.Scope> = internalRequest.request

/**
 * Whether an error means the connection broke: undici's socket, connect,
 * closed, destroyed and timeout errors (`UND_ERR_SOCKET`,
 * `UND_ERR_CONNECT_TIMEOUT`, `UND_ERR_HEADERS_TIMEOUT`, `UND_ERR_BODY_TIMEOUT`,
 * `UND_ERR_CLOSED`, …), HTTP parser errors, an {@link UpstreamConnectError},
 * and Node's ECONNRESET, EPIPE and kin — also when wrapped in a `cause` (an
 * `HttpClientError`'s, for example). Such failures destroy the connection and
 * count for the breaker; an HTTP status code never does, nor does a request
 * its caller aborted.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isConnectionError: (error: unknown) => boolean = connectionError.isConnectionError

/**
 * undici `Client` options applied to every pooled connection (timeouts,
 * keep-alive, header and response limits). `connect`, `pipelining` and
 * `allowH2` are the pool's.
 *
 * @since 0.1.0
 * @category models
 */
export type ClientOptions = Omit<Client.Options, "connect" | "pipelining" | "allowH2">

/**
 * How to make the pool: Cistern's pool settings (limits, idle expiry,
 * acquire and create timeouts, breaker, health checks, metrics…; see
 * `KeyedPool.Options`), how to open sockets and undici's client options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options
  extends Omit<
    KeyedPool.Options<UpstreamKey, Connection, UpstreamConnectError, never>,
    "acquire" | "keyId" | "describeKey" | "retry"
  > {
  /**
   * How sockets to upstreams are opened: undici's `buildConnector` options
   * (TLS `ca`, `cert`, `key`, `rejectUnauthorized`, `servername`, connect
   * `timeout`, TCP keep-alive…).
   */
  readonly connect?: buildConnector.BuildOptions | undefined
  /** The same, for the connection to an `https:` proxy. */
  readonly proxyConnect?: buildConnector.BuildOptions | undefined
  /**
   * undici `Client` options. By default `headersTimeout` is an hour and
   * `bodyTimeout` off: bound requests with `Effect.timeout`, as with
   * `@effect/platform-node`. `keepAliveTimeout` (4 s) and the server's
   * `Keep-Alive` hints still close idle sockets before a server would; the
   * pool's `idleTimeout` is the upper bound.
   */
  readonly client?: ClientOptions | undefined
}

/**
 * {@link Options} whose pool settings are read from `Config` (see
 * `PoolConfig.settings`); settings given here are defaults the config
 * overrides.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions extends Options {
  readonly config: Config.Config<PoolConfig.Settings>
}

/**
 * The pool as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class UpstreamPool extends Context.Tag("@cistern/platform-node/UpstreamPool")<
  UpstreamPool,
  KeyedPool.KeyedPool<UpstreamKey, Connection, UpstreamConnectError>
>() {}

/**
 * Makes a pool of upstream connections owned by the current scope. Its name
 * (in stats, logs, metrics and the admin API's registry) is `"upstreams"`
 * unless `name` says otherwise.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (
  options?: Options
) => Effect.Effect<KeyedPool.KeyedPool<UpstreamKey, Connection, UpstreamConnectError>, never, Scope.Scope> =
  internal.make

/**
 * Provides the pool as {@link UpstreamPool}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<UpstreamPool> => Layer.scoped(UpstreamPool, make(options))

/**
 * Like {@link layer}, with the pool's settings read from `Config`:
 *
 * ```ts
 * import { UpstreamPool } from "@cistern/platform-node"
 * import { PoolConfig } from "@cistern/pool"
 *
 * export const UpstreamsFromEnv = UpstreamPool.layerConfig({
 *   config: PoolConfig.settings({ maxPerKey: "MAX_KEEPALIVE_CONNECTIONS", maxTotal: "MAX_CONNECTIONS" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (options: ConfigOptions): Layer.Layer<UpstreamPool, ConfigError.ConfigError> =>
  Layer.scoped(
    UpstreamPool,
    Effect.flatMap(Config.unwrap(options.config), (settings) => {
      const { config: _, ...rest } = options
      const defined = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined))
      return make({ ...rest, ...defined })
    })
  )
