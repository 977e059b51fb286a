/**
 * The RAG service's vector store: the pool, the health monitor and the HTTP
 * API, as layers. `main.ts` runs them; the tests build them on a free port.
 */
import { createServer } from "node:http"
import { PoolConfig } from "@cistern/pool"
import { HttpApiBuilder, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Config, Console, Context, Duration, Effect, Layer, Option, Schedule } from "effect"
import * as Api from "./Api.js"
import * as Connection from "./Connection.js"
import * as HealthMonitor from "./HealthMonitor.js"
import * as VectorPool from "./VectorPool.js"
import * as VectorStore from "./VectorStore.js"

/** Everything the service reads from the environment (see the README's table). */
export interface AppConfig {
  readonly host: string
  readonly port: number
  /** `undefined`: start a throwaway PostgreSQL cluster. */
  readonly databaseUrl: string | undefined
  readonly poolSize: number
  readonly acquireTimeout: Duration.Duration
  readonly connectTimeout: Duration.Duration
  readonly validateTimeout: Duration.Duration
  readonly idleCheckInterval: Duration.Duration
  readonly retries: number
  readonly healthCheckInterval: Duration.Duration
  readonly healthCheckTimeout: Duration.Duration
  readonly healthHistory: number
}

/** The configuration, from the environment, with the defaults of the README's table. */
export const config: Config.Config<AppConfig> = Config.all({
  host: Config.succeed("127.0.0.1"),
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be 0 (any free port) to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8080)
  ),
  databaseUrl: Config.option(Config.nonEmptyString("DATABASE_URL")).pipe(Config.map(Option.getOrUndefined)),
  poolSize: PoolConfig.limit("POOL_SIZE").pipe(
    Config.validate({ message: "POOL_SIZE must be at most 1000", validation: (n) => n <= 1000 }),
    Config.withDefault(10)
  ),
  acquireTimeout: PoolConfig.duration("ACQUIRE_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  connectTimeout: PoolConfig.duration("CONNECT_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  validateTimeout: PoolConfig.duration("VALIDATE_TIMEOUT").pipe(Config.withDefault(Duration.seconds(2))),
  idleCheckInterval: PoolConfig.duration("IDLE_CHECK_INTERVAL").pipe(Config.withDefault(Duration.seconds(30))),
  retries: PoolConfig.count("RETRIES").pipe(Config.withDefault(5)),
  healthCheckInterval: PoolConfig.duration("HEALTH_CHECK_INTERVAL").pipe(Config.withDefault(Duration.seconds(10))),
  healthCheckTimeout: PoolConfig.duration("HEALTH_CHECK_TIMEOUT").pipe(Config.withDefault(Duration.seconds(5))),
  healthHistory: PoolConfig.limit("HEALTH_HISTORY").pipe(
    Config.validate({ message: "HEALTH_HISTORY must be at most 10000", validation: (n) => n <= 10_000 }),
    Config.withDefault(100)
  )
})

/** The store as the handlers see it: the pool and its monitor. */
export class Store extends Context.Tag("example/vector-pool/Store")<
  Store,
  { readonly pool: VectorPool.VectorPool; readonly monitor: HealthMonitor.HealthMonitor }
>() {}

/**
 * The monitor's check: the server's version, on a connection leased with
 * `get`, not `use`, so an outage is reported instead of retried through.
 */
export const versionProbe = (pool: VectorPool.VectorPool) =>
  Effect.scoped(Effect.flatMap(pool.get, Connection.serverVersion))

/**
 * The pool (its connections opened), the table created, and the monitor
 * running. Closing the layer stops the monitor, then ends every connection.
 */
export const storeLayer = (
  url: string,
  config: AppConfig
): Layer.Layer<Store, Connection.ConnectionError | Connection.QueryError | VectorPool.LeaseError> =>
  Layer.scoped(
    Store,
    Effect.gen(function* () {
      // Added before the pool, so it runs after the pool has closed: says that every connection was ended.
      let closing: VectorPool.VectorPool | undefined
      yield* Effect.addFinalizer(() =>
        closing === undefined
          ? Effect.void
          : Effect.flatMap(closing.stats, (s) =>
              Effect.logInfo(
                `pool closed: ${s.open} connections open (${s.created} opened, ${s.destroyed} ended), ${s.requests} requests served`
              )
            )
      )
      const pool = yield* VectorPool.make({
        url,
        size: config.poolSize,
        acquireTimeout: config.acquireTimeout,
        connectTimeout: config.connectTimeout,
        validateTimeout: config.validateTimeout,
        idleCheckInterval: config.idleCheckInterval,
        retries: config.retries
      })
      closing = pool
      yield* pool.use(VectorStore.migrate)
      const monitor = yield* HealthMonitor.make({
        probe: versionProbe(pool),
        stats: pool.stats,
        schedule: Schedule.spaced(config.healthCheckInterval),
        timeout: config.healthCheckTimeout,
        keep: config.healthHistory
      })
      return { pool, monitor }
    })
  )

/** What a caller sees when the store cannot serve: 503 with the reason, or 500 for a refused statement. */
const toHttpError = (error: VectorPool.LeaseError | Connection.QueryError): Api.Unavailable | Api.StoreError =>
  error._tag === "QueryError"
    ? new Api.StoreError({ reason: error.message })
    : new Api.Unavailable({ reason: error.message })

/** The handlers: each request leases one connection for its statement. */
export const VectorsLive = HttpApiBuilder.group(Api.VectorApi, "vectors", (handlers) =>
  Effect.gen(function* () {
    const { monitor, pool } = yield* Store
    return handlers
      .handle("insert", ({ payload }) =>
        pool
          .use((connection) => VectorStore.insert(connection, payload.vectors))
          .pipe(
            Effect.map((ids) => ({ ids })),
            Effect.mapError(toHttpError)
          )
      )
      .handle("search", ({ payload }) =>
        pool
          .use((connection) => VectorStore.search(connection, payload.embedding, payload.limit ?? Api.defaultLimit))
          .pipe(
            Effect.map((results) => ({ results })),
            Effect.mapError(toHttpError)
          )
      )
      .handle("health", () =>
        Effect.map(monitor.history(), (history) => {
          const latest = history.at(-1)
          return { status: latest?.status ?? "unknown", version: latest?.version ?? null, history }
        })
      )
      .handle("stats", () => pool.stats)
  })
)

/** Prints `listening on http://127.0.0.1:<port>`; built after the routes, so it means the server answers. */
const announce = Layer.effectDiscard(HttpServer.addressFormattedWith((url) => Console.log(`listening on ${url}`)))

/** The HTTP server on `config.host:config.port`, over a provided `Store`. */
export const serverLayer = (config: AppConfig) =>
  // The banner comes once the routes are in place: the server listens before it serves, and a request
  // arriving in between (a script that starts on the banner) would never be answered.
  announce.pipe(
    Layer.provideMerge(
      HttpApiBuilder.serve().pipe(Layer.provide(HttpApiBuilder.api(Api.VectorApi).pipe(Layer.provide(VectorsLive))))
    ),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: config.host, port: config.port }))
  )

/** The whole service against the store at `url`. */
export const layer = (url: string, config: AppConfig) =>
  serverLayer(config).pipe(Layer.provideMerge(storeLayer(url, config)))
