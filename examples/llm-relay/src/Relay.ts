/**
 * An LLM relay: `POST /v1/chat/completions` with `stream: true` is streamed
 * from one upstream over pooled connections (`@cistern/platform-node`), each
 * stream holding its connection only as long as it lives
 * (`StreamLease`): a browser that goes away, an upstream that fails or hangs,
 * a stream past `STREAM_TIMEOUT_SECONDS` all give the connection back (or
 * destroy it, when it was cut mid-body). A concurrency limit keeps a burst
 * from running the pool dry. `GET /healthz` shows occupancy and limits, and
 * the Cistern admin API is mounted under `/admin`.
 */

import { createServer } from "node:http"
import { AdminApi, AdminAuth, AdminHttp, ConcurrencyLimit, StreamLease } from "@cistern/platform"
import { UpstreamPool } from "@cistern/platform-node"
import { PoolConfig, PoolRegistry } from "@cistern/pool"
import { HttpApi, HttpApiBuilder, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeStream } from "@effect/platform-node"
import { Config, Context, Data, Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import type { Dispatcher } from "undici"

/** The relay's settings, from the environment (see the README's table). */
export interface RelayConfig {
  readonly maxConnections: number
  readonly maxKeepaliveConnections: number
  readonly streamTimeout: Duration.Duration
  readonly poolTimeout: Duration.Duration
  readonly limit: ConcurrencyLimit.Options
}

const seconds = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.validate({ message: `${name} must be a positive number of seconds`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.map((n) => Duration.seconds(n))
  )

/** Reads `MAX_CONNECTIONS`, `MAX_KEEPALIVE_CONNECTIONS`, `STREAM_TIMEOUT_SECONDS`, `POOL_TIMEOUT_SECONDS` and the limit's variables. */
export const relayConfig: Config.Config<RelayConfig> = Config.all({
  maxConnections: PoolConfig.limit("MAX_CONNECTIONS").pipe(Config.withDefault(100)),
  maxKeepaliveConnections: PoolConfig.count("MAX_KEEPALIVE_CONNECTIONS").pipe(Config.withDefault(20)),
  streamTimeout: seconds("STREAM_TIMEOUT_SECONDS", 600),
  poolTimeout: seconds("POOL_TIMEOUT_SECONDS", 10),
  limit: ConcurrencyLimit.config()
})

/** The upstream answered with a status other than 200: passed on as it is. */
export class UpstreamStatus extends Data.TaggedError("UpstreamStatus")<{
  readonly status: number
  readonly body: string
}> {}

/** The upstream request failed before its body started (reset, refused). */
export class UpstreamFailed extends Data.TaggedError("UpstreamFailed")<{ readonly cause: unknown }> {}

/** Request headers passed to the upstream: its switches, for demos and tests. */
const forwarded = ["x-upstream-mode", "x-upstream-tokens", "x-upstream-delay-ms"] as const

const ChatRequest = Schema.parseJson(Schema.Struct({ stream: Schema.optional(Schema.Boolean) }))

/**
 * Builds the handlers. `upstream` is the upstream's origin; every request
 * goes to the same pool key.
 */
export const makeRelay = (upstream: string, config: RelayConfig) =>
  Effect.gen(function* () {
    const pool = yield* UpstreamPool.UpstreamPool
    const limit = yield* ConcurrencyLimit.ConcurrencyLimit
    const key = UpstreamPool.key(upstream)
    const leases = StreamLease.make(pool, { format: "sse", maxDuration: config.streamTimeout })

    /**
     * Keeps at most `MAX_KEEPALIVE_CONNECTIONS` idle: a connection whose
     * stream completed while that many are idle is closed instead of kept
     * (the pool itself bounds the total, not the idle ones).
     */
    const capIdle = (connection: UpstreamPool.Connection) =>
      Effect.flatMap(pool.stats, (stats) =>
        stats.idle >= config.maxKeepaliveConnections ? pool.invalidate(connection) : Effect.void
      )

    const send = (connection: UpstreamPool.Connection, body: string, headers: Record<string, string>) =>
      Effect.gen(function* () {
        // Closing the lease's scope aborts a request still in flight: undici
        // then destroys the socket, which the pool drops.
        const controller = yield* Effect.acquireRelease(
          Effect.sync(() => new AbortController()),
          (controller) => Effect.sync(() => controller.abort())
        )
        yield* Effect.addFinalizer(() => capIdle(connection))
        const response: Dispatcher.ResponseData = yield* Effect.tryPromise({
          try: () =>
            connection.dispatcher.request({
              origin: upstream,
              path: "/v1/chat/completions",
              method: "POST",
              headers: { "content-type": "application/json", ...headers },
              body,
              signal: controller.signal
            }),
          catch: (cause) => new UpstreamFailed({ cause })
        })
        if (response.statusCode !== 200) {
          const text = yield* Effect.tryPromise({
            try: () => response.body.text(),
            catch: (cause) => new UpstreamFailed({ cause })
          })
          return yield* new UpstreamStatus({ status: response.statusCode, body: text })
        }
        // Not `Stream.fromAsyncIterable`: ending its iterator waits for a pending
        // read, so a hung upstream would hold the stream (and its lease) open.
        return NodeStream.fromReadable<UpstreamFailed, Uint8Array>(
          () => response.body,
          (cause) => new UpstreamFailed({ cause })
        )
      })

    const chatHandler = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const raw = yield* request.text
      const parsed = yield* Schema.decodeUnknown(ChatRequest)(raw)
      if (parsed.stream !== true) {
        return HttpServerResponse.unsafeJson(
          { error: { type: "invalid_request_error", message: "this relay streams only: send stream: true" } },
          { status: 400 }
        )
      }
      const headers: Record<string, string> = {}
      for (const name of forwarded) {
        const value = request.headers[name]
        if (value !== undefined) headers[name] = value
      }
      return yield* leases.respond(key, (connection) => send(connection, raw, headers))
    }).pipe(
      Effect.catchTags({
        RequestError: () => Effect.succeed(error(400, "invalid_request_error", "could not read the request body")),
        ParseError: () => Effect.succeed(error(400, "invalid_request_error", "the body must be JSON")),
        PoolTimeout: (e) =>
          Effect.succeed(
            error(503, "pool_timeout", `no upstream connection within ${e.waitedMillis} ms`, { "retry-after": "1" })
          ),
        CircuitOpen: (e) =>
          Effect.succeed(
            error(503, "upstream_unavailable", "the upstream is failing; try again later", {
              "retry-after": String(Math.max(1, Math.ceil(e.retryAfterMillis / 1000)))
            })
          ),
        StreamTimeout: () => Effect.succeed(error(504, "upstream_timeout", "the upstream did not answer in time")),
        UpstreamStatus: (e) =>
          Effect.succeed(HttpServerResponse.text(e.body, { status: e.status, contentType: "application/json" })),
        UpstreamFailed: () => Effect.succeed(error(502, "upstream_error", "the upstream request failed")),
        UpstreamConnectError: () => Effect.succeed(error(502, "upstream_error", "could not connect to the upstream"))
      }),
      Effect.catchAll(() => Effect.succeed(error(503, "pool_unavailable", "no upstream connection available")))
    )

    const healthz = Effect.gen(function* () {
      const stats = yield* pool.stats
      const requests = yield* limit.stats
      return HttpServerResponse.unsafeJson({
        status: stats.closed ? "closed" : "ok",
        pool: {
          size: stats.size,
          idle: stats.idle,
          inUse: stats.inUse,
          creating: stats.creating,
          waiting: stats.waiting,
          created: stats.created,
          destroyed: stats.destroyed,
          timeouts: stats.timeouts
        },
        requests: { inFlight: requests.inFlight, queued: requests.queued, rejected: requests.rejected },
        limits: {
          maxConnections: config.maxConnections,
          maxKeepaliveConnections: config.maxKeepaliveConnections,
          streamTimeoutSeconds: Duration.toSeconds(config.streamTimeout),
          poolTimeoutSeconds: Duration.toSeconds(config.poolTimeout),
          maxConcurrentRequests: requests.maxConcurrent,
          maxQueuedRequests: requests.maxQueued,
          queueTimeoutSeconds: requests.queueTimeoutMillis === null ? null : requests.queueTimeoutMillis / 1000
        }
      })
    })

    return { chat: ConcurrencyLimit.middleware(limit)(chatHandler), healthz, pool, limit }
  })

const error = (status: number, type: string, message: string, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson({ error: { type, message } }, { status, headers })

/** The relay's API: the Cistern admin group under `/admin`; the streaming routes are added to its router. */
export class RelayApi extends HttpApi.make("llm-relay").add(AdminApi.AdminGroup.prefix("/admin")) {}

/** What the relay is started with. */
export interface RelayOptions {
  readonly upstream: string
  readonly config: RelayConfig
  readonly adminToken: Redacted.Redacted<string>
}

/**
 * The whole relay as a layer, needing an `HttpServer`: pools, limit, routes,
 * admin API.
 */
export const layer = (options: RelayOptions) => {
  const { config } = options
  const Routes = HttpApiBuilder.Router.use((router) =>
    Effect.gen(function* () {
      const relay = yield* makeRelay(options.upstream, config)
      yield* router.post("/v1/chat/completions", relay.chat)
      yield* router.get("/healthz", relay.healthz)
    })
  )
  const Api = HttpApiBuilder.api(RelayApi).pipe(
    Layer.provide(AdminHttp.layerGroup(RelayApi)),
    Layer.provide(AdminAuth.layer({ token: options.adminToken }))
  )
  const Pools = UpstreamPool.layer({
    name: "upstreams",
    maxPerKey: config.maxConnections,
    maxTotal: config.maxConnections,
    acquireTimeout: config.poolTimeout,
    // A burst of streams needs its connections now; the default (4 at a
    // time per upstream) would ramp a cold relay up to 400 streams slowly.
    createConcurrency: Math.min(config.maxConnections, 128),
    idleTimeout: "5 minutes",
    cleanupInterval: "30 seconds",
    // Streams are cut at once on shutdown rather than waited for.
    drainTimeout: "1 second",
    // undici's own idle close (4 s by default) would otherwise beat the pool's idle rules.
    client: { keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000 }
  })
  return HttpApiBuilder.serve(AdminHttp.logger).pipe(
    Layer.provide(Routes),
    Layer.provide(Api),
    Layer.provide(ConcurrencyLimit.layer({ name: "chat completions", ...config.limit })),
    Layer.provide(Pools),
    Layer.provide(PoolRegistry.layer)
  )
}

/** The admin token from `CISTERN_ADMIN_TOKEN`, or a fresh random one (shown once at start). */
export const adminToken: Effect.Effect<{ readonly token: Redacted.Redacted<string>; readonly generated: boolean }> =
  Effect.map(Effect.option(AdminAuth.token()), (token) =>
    Option.match(token, {
      onSome: (token) => ({ token, generated: false }),
      onNone: () => ({
        token: Redacted.make(Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("hex")),
        generated: true
      })
    })
  )

/**
 * Serves the relay on 127.0.0.1 and `port` (0: any free one) in the current
 * scope, and answers with the address it listens on.
 */
export const listen = (options: RelayOptions, port: number) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      layer(options).pipe(Layer.provideMerge(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port })))
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    return { port: address.port, url: `http://127.0.0.1:${address.port}` }
  })
