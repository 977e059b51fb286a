/**
 * A small service with two named keyed pools doing background work, and the
 * Cistern admin API beside it:
 *
 * - `upstreams`: connections to an HTTP upstream, one key per tenant;
 * - `mcp`: MCP sessions per `user × server`, whose keys carry the user's API
 *   key: stats and logs show `user:server` only.
 *
 * Workers lease from both every few hundred milliseconds, now and then in a
 * burst that fills a key; one tenant (`umbrella`) always has more work than
 * connections, and one (`hooli-eu`) has an upstream that is down, so its
 * circuit opens. The admin API and its dashboard have waiters, timeouts, an
 * open circuit and idle items to show.
 */

import { createHash } from "node:crypto"
import { createServer } from "node:http"
import { AdminAuth, AdminHttp } from "@cistern/platform"
import { KeyedPool, PoolRegistry } from "@cistern/pool"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import {
  Config,
  Context,
  Data,
  Duration,
  Effect,
  Layer,
  Metric,
  MetricBoundaries,
  Random,
  type Redacted,
  Ref,
  Schedule,
  type Scope
} from "effect"

/** What the service needs to start. */
export interface AppConfig {
  readonly host: string
  readonly port: number
  readonly token: Redacted.Redacted<string>
  readonly publicHealth: boolean
  /** How often the dashboard samples the pools. Default 1 second. */
  readonly dashboardInterval?: Duration.DurationInput | undefined
}

/** `CISTERN_ADMIN_TOKEN` is missing, empty or has whitespace. */
export class MissingToken extends Data.TaggedError("MissingToken") {}

/** `PORT` or `ADMIN_PUBLIC_HEALTH` is invalid. */
export class InvalidSettings extends Data.TaggedError("InvalidSettings")<{ readonly message: string }> {}

const settings = Config.all({
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be 0 (any free port) to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8787)
  ),
  publicHealth: Config.boolean("ADMIN_PUBLIC_HEALTH").pipe(Config.withDefault(false))
})

/** Reads the config: the token from `CISTERN_ADMIN_TOKEN`, `PORT` (default 8787), `ADMIN_PUBLIC_HEALTH`. */
export const readConfig: Effect.Effect<AppConfig, MissingToken | InvalidSettings> = Effect.gen(function* () {
  const token = yield* Effect.mapError(AdminAuth.token(), () => new MissingToken())
  const { port, publicHealth } = yield* Effect.mapError(
    settings,
    (error) => new InvalidSettings({ message: String(error) })
  )
  return { host: "127.0.0.1", port, token, publicHealth }
})

/** Open connections per pool, counted by the resources' own finalizers. */
export class Connections extends Context.Tag("example/Connections")<
  Connections,
  {
    readonly open: Ref.Ref<Readonly<Record<string, number>>>
    readonly track: (pool: string) => Effect.Effect<void, never, Scope.Scope>
  }
>() {
  /** Logs what is still open once everything built after it has closed: every pool drained. */
  static readonly layer = Layer.scoped(
    Connections,
    Effect.gen(function* () {
      const open = yield* Ref.make<Readonly<Record<string, number>>>({})
      const change = (pool: string, by: number) => Ref.update(open, (o) => ({ ...o, [pool]: (o[pool] ?? 0) + by }))
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(Ref.get(open), (o) =>
          Effect.logInfo(
            `all pools drained: ${Object.entries(o)
              .map(([pool, n]) => `${pool} ${n} open`)
              .join(", ")}`
          )
        )
      )
      return {
        open,
        track: (pool: string) => Effect.acquireRelease(change(pool, 1), () => change(pool, -1))
      }
    })
  )
}

export interface Connection {
  readonly id: number
  readonly tenant: string
}

export interface McpKey {
  readonly userId: string
  readonly server: string
  /** The user's credential for that server: never shown, only fingerprinted. */
  readonly apiKey: string
}

export interface Session {
  readonly id: number
  readonly server: string
}

/** The upstream of a tenant refuses connections. */
export class UpstreamDown extends Data.TaggedError("UpstreamDown")<{ readonly tenant: string }> {
  override get message() {
    return `the upstream of ${this.tenant} refuses connections`
  }
}

export class Upstreams extends Context.Tag("example/Upstreams")<
  Upstreams,
  KeyedPool.KeyedPool<string, Connection, UpstreamDown>
>() {}

export class McpSessions extends Context.Tag("example/McpSessions")<
  McpSessions,
  KeyedPool.KeyedPool<McpKey, Session>
>() {}

let serial = 0

/** A connection takes a little while to open; its finalizer closes it. */
const connect = <A>(pool: string, make: (id: number) => A) =>
  Effect.flatMap(Connections, (connections) =>
    Effect.zipRight(Effect.sleep("20 millis"), Effect.as(connections.track(pool), make(++serial)))
  )

/** This tenant's upstream is down: every connection attempt fails, and its circuit opens. */
export const downTenant = "hooli-eu"

/** This tenant always has more work than its two connections: callers wait, some give up. */
export const busyTenant = "umbrella"

const UpstreamsLive = KeyedPool.layer(Upstreams, {
  name: "upstreams",
  acquire: (tenant: string) =>
    tenant === downTenant
      ? Effect.zipRight(Effect.sleep("20 millis"), Effect.fail(new UpstreamDown({ tenant })))
      : connect("upstreams", (id) => ({ id, tenant })),
  describeKey: (tenant) => tenant,
  breaker: { failures: 3, reset: "20 seconds" },
  maxKeys: 50,
  maxPerKey: 2,
  maxTotal: 8,
  idleTimeout: "20 seconds",
  cleanupInterval: "5 seconds",
  acquireTimeout: "1 second",
  drainTimeout: "2 seconds"
})

const McpLive = KeyedPool.layer(McpSessions, {
  name: "mcp",
  acquire: (key: McpKey) => connect("mcp", (id) => ({ id, server: key.server })),
  keyId: (key) => `${key.userId}:${key.server}`,
  describeKey: (key) => `${key.userId}:${key.server}`,
  fingerprint: (key) => createHash("sha256").update(key.apiKey).digest("hex").slice(0, 16),
  maxPerKey: 3,
  maxTotal: 10,
  idleTimeout: "1 minute",
  cleanupInterval: "15 seconds",
  acquireTimeout: "2 seconds",
  drainTimeout: "2 seconds"
})

const tenants = ["acme", "globex", "initech", busyTenant]
const mcpKeys: ReadonlyArray<McpKey> = [
  { userId: "user1", server: "github-mcp", apiKey: "ghp_example_user1" },
  { userId: "user1", server: "notion-mcp", apiKey: "secret_example_user1" },
  { userId: "user2", server: "github-mcp", apiKey: "ghp_example_user2" }
]

const jobs = Metric.counter("example_jobs_total", { description: "Background jobs by pool and outcome" })
const jobSeconds = Metric.histogram(
  "example_job_seconds",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 6 }),
  "How long background jobs took, waiting included"
)

const outcomeOf = (error: unknown): string => {
  const tag = typeof error === "object" && error !== null && "_tag" in error ? error._tag : undefined
  return tag === "PoolTimeout" ? "timeout" : tag === "CircuitOpen" ? "circuit-open" : "error"
}

/** One job: lease an item of `key`, work for 50–400 ms, count the outcome. */
const job = <K, A, E>(pool: string, self: KeyedPool.KeyedPool<K, A, E>, key: K) =>
  Effect.gen(function* () {
    const millis = yield* Random.nextIntBetween(50, 400)
    const outcome: string = yield* self
      .use(key, () => Effect.sleep(Duration.millis(millis)))
      .pipe(
        Effect.as("ok"),
        Effect.catchAll((error) => Effect.succeed(outcomeOf(error))),
        Metric.trackDurationWith(jobSeconds.pipe(Metric.tagged("pool", pool)), Duration.toSeconds)
      )
    yield* Metric.increment(Metric.tagged(Metric.tagged(jobs, "pool", pool), "outcome", outcome))
  })

/** Every 300 ms a job on a random key; one time in six a burst of eight on the same key. */
const worker = <K, A, E>(pool: string, self: KeyedPool.KeyedPool<K, A, E>, keys: ReadonlyArray<K>) =>
  Effect.gen(function* () {
    const key = keys[yield* Random.nextIntBetween(0, keys.length)]
    const burst = (yield* Random.nextIntBetween(0, 6)) === 0 ? 8 : 1
    yield* Effect.forEach(Array.from({ length: burst }), () => job(pool, self, key), {
      concurrency: "unbounded",
      discard: true
    })
  }).pipe(
    Effect.catchAllCause((cause) => Effect.logWarning("a background job failed", cause)),
    Effect.repeat(Schedule.spaced("300 millis"))
  )

const summary = Effect.gen(function* () {
  const registry = yield* PoolRegistry.PoolRegistry
  for (const entry of yield* registry.list) {
    const s = yield* entry.stats
    yield* Effect.logInfo(
      `${s.name}: ${s.size} items (${s.inUse} leased, ${s.idle} idle), ${s.waiting} waiting, ${s.keys} keys, ${s.timeouts} timeouts`
    )
  }
})

/** The workers, and a summary line every 15 seconds; they stop when the layer closes. */
const WorkersLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const upstreams = yield* Upstreams
    const mcp = yield* McpSessions
    yield* Effect.forkScoped(worker("upstreams", upstreams, tenants))
    yield* Effect.forkScoped(worker("mcp", mcp, mcpKeys))
    // four jobs at a time on a key of two connections: it stays saturated, with callers waiting
    yield* Effect.forkScoped(
      Effect.forEach(Array.from({ length: 4 }), () => Effect.forever(job("upstreams", upstreams, busyTenant)), {
        concurrency: "unbounded",
        discard: true
      })
    )
    // a tenant whose upstream is down: three failures open its circuit; probes every 20 seconds fail again
    yield* Effect.forkScoped(job("upstreams", upstreams, downTenant).pipe(Effect.repeat(Schedule.spaced("500 millis"))))
    yield* Effect.forkScoped(Effect.repeat(Effect.delay(summary, "15 seconds"), Schedule.forever))
  })
)

/** Both pools, registered in one `PoolRegistry`, over the connection counter. */
export const PoolsLive = Layer.mergeAll(UpstreamsLive, McpLive).pipe(
  Layer.provideMerge(Connections.layer),
  Layer.provideMerge(PoolRegistry.layer)
)

/**
 * The whole service. Closing it stops the admin server and the workers first,
 * then drains both pools, then reports what is still open (nothing).
 */
export const layer = (config: AppConfig) => {
  const banner = Layer.effectDiscard(
    HttpServer.addressFormattedWith((url) =>
      Effect.logInfo(
        `admin API listening on ${url}: GET /pools, /pools/:name, /health, /metrics, /livez; POST /pools/:name/cleanup; dashboard at ${url}/dashboard; docs at ${url}/docs`
      )
    )
  )
  // The banner comes once the routes are in place: the server listens before it serves, and a request
  // arriving in between (a script that starts on the banner) would never be answered.
  const AdminLive = banner.pipe(
    Layer.provideMerge(AdminHttp.layerServer({ dashboard: { interval: config.dashboardInterval ?? "1 second" } })),
    Layer.provide(AdminAuth.layer({ token: config.token, publicHealth: config.publicHealth })),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: config.host, port: config.port }))
  )
  return Layer.mergeAll(AdminLive, WorkersLive).pipe(Layer.provideMerge(PoolsLive))
}
