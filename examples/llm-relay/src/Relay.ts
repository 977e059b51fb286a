/**
 * An LLM relay: `POST /v1/chat/completions` with `stream: true` is streamed
 * from one upstream, over several accounts, over pooled connections
 * (`@cistern/platform-node`), each
 * stream holding its connection only as long as it lives
 * (`StreamLease`): a browser that goes away, an upstream that fails or hangs,
 * a stream past `STREAM_TIMEOUT_SECONDS` all give the connection back (or
 * destroy it, when it was cut mid-body). A concurrency limit keeps a burst
 * from running the pool dry. `GET /healthz` shows occupancy and limits, and
 * the Cistern admin API is mounted under `/admin`.
 *
 * Each account is its own pool key with a circuit breaker (3 connection
 * failures within 60 seconds open it for 60 seconds; see `Breaker.ts`). A request with `x-session-id` keeps its
 * session's account while that account is healthy and moves when its circuit
 * opens (see `Sessions.ts`); `GET /admin/sessions?user=…` or `?apiKey=…`
 * finds sessions, behind the admin token.
 */

import { createServer } from "node:http"
import { AdminApi, AdminAuth, AdminHttp, ConcurrencyLimit } from "@cistern/platform"
import { UpstreamPool, UpstreamRelay } from "@cistern/platform-node"
import { PoolConfig, PoolRegistry } from "@cistern/pool"
import { HttpApi, HttpApiBuilder, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Config, Context, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import * as Breaker from "./Breaker.js"
import {
  type Account,
  accountsConfig,
  fingerprint,
  layerStores,
  makeAffinity,
  Sessions,
  type SessionsConfig,
  sessionsConfig
} from "./Sessions.js"

/** The relay's settings, from the environment (see the README's table). */
export interface RelayConfig {
  readonly maxConnections: number
  readonly maxKeepaliveConnections: number
  readonly streamTimeout: Duration.Duration
  readonly poolTimeout: Duration.Duration
  readonly limit: ConcurrencyLimit.Options
  /** The upstream accounts, each its own pool key and circuit. */
  readonly accounts: ReadonlyArray<Account>
  /** Connection failures within `window` that open an account's circuit, and how long it stays open. */
  readonly breaker: { readonly failures: number; readonly window: Duration.Duration; readonly reset: Duration.Duration }
  readonly sessions: SessionsConfig
}

const seconds = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.validate({ message: `${name} must be a positive number of seconds`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.map((n) => Duration.seconds(n))
  )

/**
 * Reads `MAX_CONNECTIONS`, `MAX_KEEPALIVE_CONNECTIONS`, `STREAM_TIMEOUT_SECONDS`,
 * `POOL_TIMEOUT_SECONDS`, the limit's variables, `UPSTREAM_ACCOUNTS`,
 * `BREAKER_FAILURES`, `BREAKER_WINDOW_SECONDS`, `BREAKER_RESET_SECONDS` and
 * the sessions' variables.
 */
export const relayConfig: Config.Config<RelayConfig> = Config.all({
  maxConnections: PoolConfig.limit("MAX_CONNECTIONS").pipe(Config.withDefault(100)),
  maxKeepaliveConnections: PoolConfig.count("MAX_KEEPALIVE_CONNECTIONS").pipe(Config.withDefault(20)),
  streamTimeout: seconds("STREAM_TIMEOUT_SECONDS", 600),
  poolTimeout: seconds("POOL_TIMEOUT_SECONDS", 10),
  limit: ConcurrencyLimit.config(),
  accounts: accountsConfig,
  breaker: Config.all({
    failures: PoolConfig.count("BREAKER_FAILURES").pipe(
      Config.validate({ message: "BREAKER_FAILURES must be at least 1", validation: (n) => n >= 1 }),
      Config.withDefault(3)
    ),
    window: seconds("BREAKER_WINDOW_SECONDS", 60),
    reset: seconds("BREAKER_RESET_SECONDS", 60)
  }),
  sessions: sessionsConfig
})

/** The header a client names its session with; a session keeps its upstream account. */
export const sessionHeader = "x-session-id"
/** The response header naming the account a request went to. */
export const accountHeader = "x-upstream-account"

const validSessionId = /^[A-Za-z0-9._:-]{1,128}$/

/** Request headers passed to the upstream: its switches, for demos and tests. */
const forwarded = ["x-upstream-mode", "x-upstream-tokens", "x-upstream-delay-ms"] as const

/**
 * Whether the body asks for a stream. One `JSON.parse` of the body the relay
 * forwards as it is (no decode and re-encode, no schema: the only field the
 * relay reads is `stream`); `undefined` for a body that is not JSON.
 */
const wantsStream = (raw: string): boolean | undefined => {
  try {
    const parsed: unknown = JSON.parse(raw)
    return typeof parsed === "object" && parsed !== null && (parsed as { stream?: unknown }).stream === true
  } catch {
    return undefined
  }
}

/**
 * Builds the handlers. `upstream` is the upstream's origin; each account is
 * a pool key of its own.
 */
export const makeRelay = (upstream: string, config: RelayConfig, adminToken: Redacted.Redacted<string>) =>
  Effect.gen(function* () {
    const pool = yield* UpstreamPool.UpstreamPool
    const limit = yield* ConcurrencyLimit.ConcurrencyLimit
    const sessions = yield* Sessions
    const breaker = Breaker.make(
      config.accounts.map((a) => a.name),
      config.breaker
    )
    const { affinity, keyOf, names } = yield* makeAffinity(
      upstream,
      config.accounts,
      config.sessions.affinityTtl,
      breaker.circuits
    )
    const apiKeys = new Map(config.accounts.map((a) => [a.name, a.apiKey]))
    const isAdmin = AdminAuth.verifier(adminToken)

    /**
     * Keeps at most `MAX_KEEPALIVE_CONNECTIONS` idle: a connection whose
     * stream completed while that many are idle is closed instead of kept
     * (the pool itself bounds the total, not the idle ones).
     */
    const capIdle = (ending: UpstreamRelay.Ending, connection: UpstreamPool.Connection) =>
      ending !== "completed"
        ? Effect.void
        : Effect.flatMap(pool.stats, (stats) =>
            stats.idle >= config.maxKeepaliveConnections ? pool.invalidate(connection) : Effect.void
          )
    const relayOptions: UpstreamRelay.Options = { format: "sse", maxDuration: config.streamTimeout, onEnd: capIdle }

    /** Accounts whose circuit is open now (and not yet due for its probe). */
    const openAccounts = Effect.map(breaker.circuits, (circuits) => {
      const open = new Set<string>()
      for (const [name, { circuit }] of circuits) if (circuit === "open") open.add(name)
      return open
    })

    /** A request without a session: the accounts in turn, skipping open ones. */
    let turn = 0
    const nextAccount = Effect.map(openAccounts, (open) => {
      const start = turn++ % names.length
      for (let i = 0; i < names.length; i++) {
        const name = names[(start + i) % names.length]!
        if (!open.has(name)) return name
      }
      return names[start]!
    })

    /**
     * The account of a request: its session's (pinned, moved when the
     * account's circuit opened), or the next one in turn. The session's
     * record is created or updated on the way.
     */
    const accountFor = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function* () {
        const sessionId = request.headers[sessionHeader]
        if (sessionId === undefined || !validSessionId.test(sessionId)) return yield* nextAccount
        const resolved = yield* affinity.resolve(sessionId)
        const account = resolved.key
        const moved = resolved.reason === "open" || resolved.reason === "gone"
        if (moved) {
          yield* Effect.logInfo("session moved to another account").pipe(
            Effect.annotateLogs({
              session: sessionId,
              from: Option.getOrElse(resolved.previous, () => "none"),
              to: account,
              reason: resolved.reason
            })
          )
        }
        const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "")?.[1]
        yield* sessions.getOrCreate(
          sessionId,
          Effect.succeed({
            userId: request.headers["x-user-id"] ?? "anonymous",
            apiKey: bearer === undefined ? "none" : fingerprint(bearer),
            account,
            requests: 0,
            moves: 0
          })
        )
        yield* sessions.update(
          sessionId,
          (s) => ({
            ...s,
            account,
            requests: s.requests + 1,
            moves: s.moves + (moved && s.account !== account ? 1 : 0)
          }),
          { ttl: config.sessions.ttl }
        )
        return account
      }).pipe(
        // A session store that cannot read its own data is no reason to turn a request away.
        Effect.catchTag("SessionSchemaError", () => nextAccount)
      )

    /**
     * Sends the request to `account` through its circuit: a connection
     * failure before the upstream answers counts for it, an answer closes a
     * probing circuit, anything else (the client went away, no connection in
     * time) leaves it as it was.
     */
    const relay = (account: string, body: string, headers: Record<string, string>) =>
      Effect.zipRight(
        breaker.admit(account),
        UpstreamRelay.respond(
          pool,
          keyOf(account),
          {
            method: "POST",
            path: "/v1/chat/completions",
            headers: { "content-type": "application/json", ...headers },
            body
          },
          relayOptions
        ).pipe(
          Effect.onExit((exit) => {
            if (Exit.isSuccess(exit)) return breaker.success(account)
            const failure = Option.getOrUndefined(Cause.failureOption(exit.cause))
            return failure !== undefined &&
              (failure._tag === "UpstreamConnectError" ||
                (failure._tag === "UpstreamRequestError" && UpstreamPool.isConnectionError(failure.cause)))
              ? breaker.failure(account)
              : breaker.settle(account)
          })
        )
      )

    const chatHandler = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const account = yield* accountFor(request)
      return yield* chatOn(request, account).pipe(Effect.map(HttpServerResponse.setHeader(accountHeader, account)))
    })

    const chatOn = (request: HttpServerRequest.HttpServerRequest, account: string) =>
      Effect.gen(function* () {
        const raw = yield* request.text
        const stream = wantsStream(raw)
        if (stream === undefined) return error(400, "invalid_request_error", "the body must be JSON")
        if (!stream) {
          return HttpServerResponse.unsafeJson(
            { error: { type: "invalid_request_error", message: "this relay streams only: send stream: true" } },
            { status: 400 }
          )
        }
        const headers: Record<string, string> = { authorization: `Bearer ${apiKeys.get(account)!}` }
        for (const name of forwarded) {
          const value = request.headers[name]
          if (value !== undefined) headers[name] = value
        }
        return yield* relay(account, raw, headers)
      }).pipe(
        Effect.catchTags({
          RequestError: () => Effect.succeed(error(400, "invalid_request_error", "could not read the request body")),
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
          AccountOpen: (e) =>
            Effect.succeed(
              error(503, "upstream_unavailable", "the upstream is failing; try again later", {
                "retry-after": String(Math.max(1, Math.ceil(e.retryAfterMillis / 1000)))
              })
            ),
          UpstreamTimeout: () => Effect.succeed(error(504, "upstream_timeout", "the upstream did not answer in time")),
          UpstreamRequestError: () => Effect.succeed(error(502, "upstream_error", "the upstream request failed")),
          UpstreamConnectError: () => Effect.succeed(error(502, "upstream_error", "could not connect to the upstream"))
        }),
        Effect.catchAll(() => Effect.succeed(error(503, "pool_unavailable", "no upstream connection available")))
      )

    const healthz = Effect.gen(function* () {
      const stats = yield* pool.stats
      const requests = yield* limit.stats
      const circuits = yield* breaker.circuits
      return HttpServerResponse.unsafeJson({
        status: stats.closed ? "closed" : "ok",
        accounts: Object.fromEntries(Array.from(circuits, ([name, { circuit }]) => [name, circuit])),
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

    /** `GET /admin/sessions?user=…` or `?apiKey=…` (the client's key; looked up by its fingerprint). */
    const findSessions = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (!isAdmin(request.headers.authorization)) {
        return HttpServerResponse.unsafeJson(
          { _tag: "Unauthorized", message: "Unauthorized" },
          { status: 401, headers: { "www-authenticate": "Bearer" } }
        )
      }
      const query = new URL(request.url, "http://relay").searchParams
      const user = query.get("user")
      const apiKey = query.get("apiKey")
      if ((user === null) === (apiKey === null)) {
        return error(400, "invalid_request_error", "give exactly one of user or apiKey")
      }
      const found =
        user !== null ? yield* sessions.findBy("user", user) : yield* sessions.findBy("apiKey", fingerprint(apiKey!))
      const open = yield* openAccounts
      return HttpServerResponse.unsafeJson({
        sessions: found.map((f) => ({
          id: f.id,
          userId: f.value.userId,
          account: f.value.account,
          accountOpen: open.has(f.value.account),
          requests: f.value.requests,
          moves: f.value.moves,
          expiresAt: new Date(f.expiresAt).toISOString()
        }))
      })
    })

    return { chat: ConcurrencyLimit.middleware(limit)(chatHandler), healthz, findSessions, pool, limit }
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
      const relay = yield* makeRelay(options.upstream, config, options.adminToken)
      yield* router.post("/v1/chat/completions", relay.chat)
      yield* router.get("/healthz", relay.healthz)
      yield* router.get("/admin/sessions", relay.findSessions)
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
    client: { keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000 },
    // Per account, the relay's own breaker (failures within a time window; the pool's counts them in a row).
    breaker: false
  })
  return HttpApiBuilder.serve(AdminHttp.logger).pipe(
    Layer.provide(Routes),
    Layer.provide(Api),
    Layer.provide(ConcurrencyLimit.layer({ name: "chat completions", ...config.limit })),
    Layer.provide(Pools),
    Layer.provide(layerStores(config.sessions)),
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
