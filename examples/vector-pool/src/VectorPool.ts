/**
 * The service's fixed pool of PostgreSQL connections: `size` connections made
 * at start, each checked with `SELECT 1` before it is lent out (a failing one
 * is destroyed and rebuilt), idle ones checked on a schedule too, calls that
 * lose their connection retried on a new one with backoff, and a request
 * counter. Closing the scope that made it ends every connection.
 *
 * All of it is one `Pool` from `@cistern/pool`: its options are the whole
 * connection management of the service.
 */
import { Pool, type PoolError } from "@cistern/pool"
import { Duration, Effect, Ref, Schedule, Schema, type Scope } from "effect"
import * as Connection from "./Connection.js"

/** How the pool is made. */
export interface Options {
  /** `postgres://` URL of the vector store. */
  readonly url: string
  /** Connections, all made at start and kept (the pool is fixed-size). Default 10. */
  readonly size?: number | undefined
  /** How long a request may wait for a connection. Default 5 seconds. */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** How long opening one connection may take. Default 5 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Bound of the `SELECT 1` run before each lease. Default 2 seconds. */
  readonly validateTimeout?: Duration.DurationInput | undefined
  /** How often idle connections are checked with `SELECT 1`. Default 30 seconds. */
  readonly idleCheckInterval?: Duration.DurationInput | undefined
  /** Retries of a call whose connection was lost (exponential from 100 ms, each delay at most 1 s). Default 5. */
  readonly retries?: number | undefined
  /** `application_name` of every connection. Default `vector-pool`. */
  readonly applicationName?: string | undefined
}

/**
 * What the pool reports: the stats the hand-written pool kept (pool size, open, available and
 * active connections, failed connections, total requests) from the pool's own
 * counters.
 */
export const Stats = Schema.Struct({
  /** The configured, fixed number of connections. */
  poolSize: Schema.Number,
  /** Connections open right now, being opened included. */
  open: Schema.Number,
  /** Idle connections, ready to lend. */
  available: Schema.Number,
  /** Connections lent to a request or a check right now. */
  active: Schema.Number,
  /** Requests waiting for a connection. */
  waiting: Schema.Number,
  /** Connections opened since start (rebuilds included). */
  created: Schema.Number,
  /** Connections ended since start (broken ones included). */
  destroyed: Schema.Number,
  /** Connection attempts that failed. */
  failedConnections: Schema.Number,
  /** Requests that gave up waiting for a connection. */
  timeouts: Schema.Number,
  /** Leases asked for since start (each request is one, whatever its outcome). */
  requests: Schema.Number
})

/** A stats snapshot. */
export interface Stats extends Schema.Schema.Type<typeof Stats> {}

/** Errors a lease adds to the caller's own: the pool's, or a connection that could not be (re)made. */
export type LeaseError = PoolError.PoolError | Connection.ConnectionError

/** The pool. */
export interface VectorPool {
  /** Lends a connection for the duration of `f`; retried on a new connection when the old one was lost. */
  readonly use: <B, E, R>(
    f: (connection: Connection.Connection) => Effect.Effect<B, E, R>
  ) => Effect.Effect<B, E | LeaseError, R>
  /** Lends a connection until the caller's scope closes (no retry: the caller holds it). */
  readonly get: Effect.Effect<Connection.Connection, LeaseError, Scope.Scope>
  /** A snapshot of the counters. */
  readonly stats: Effect.Effect<Stats>
}

/**
 * Makes the pool in the current scope and opens its `size` connections. If
 * the store is down at start, that is logged and the pool opens connections
 * as requests and its checks ask for them.
 */
export const make = (options: Options): Effect.Effect<VectorPool, never, Scope.Scope> =>
  Effect.gen(function* () {
    const size = options.size ?? 10
    const requests = yield* Ref.make(0)
    const pool = yield* Pool.make({
      name: "vector-store",
      acquire: Connection.connect({ url: options.url, applicationName: options.applicationName ?? "vector-pool" }),
      // Fixed-size: `size` connections, kept open (never expired for idleness), refilled when one is lost.
      max: size,
      minIdle: size,
      idleTimeout: Duration.infinity,
      acquireTimeout: options.acquireTimeout ?? "5 seconds",
      createTimeout: options.connectTimeout ?? "5 seconds",
      // After a failed connect, the next waits 50 ms, doubling up to 1 s: a restarted server is found quickly.
      createBackoff: { initial: "50 millis", max: "1 second" },
      validate: Connection.ping,
      validateTimeout: options.validateTimeout ?? "2 seconds",
      healthCheck: { check: Connection.ping },
      healthCheckInterval: options.idleCheckInterval ?? "30 seconds",
      isConnectionError: Connection.isConnectionError,
      retry: Schedule.exponential("100 millis").pipe(
        Schedule.jittered,
        Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(1))),
        Schedule.intersect(Schedule.recurs(options.retries ?? 5))
      ),
      drainTimeout: "5 seconds"
    })
    // `minIdle` alone would open them in the background; waiting here means the service starts with all of them.
    yield* pool.prewarm(size).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("could not open every connection at start", cause)),
      Effect.annotateLogs({ module: "VectorPool" })
    )
    const count = Ref.update(requests, (n) => n + 1)
    return {
      use: (f) => Effect.zipRight(count, pool.use(f)),
      get: Effect.zipRight(count, pool.get),
      stats: Effect.zipWith(pool.stats, Ref.get(requests), (s, requests) => ({
        poolSize: size,
        open: s.size,
        available: s.idle,
        active: s.inUse,
        waiting: s.waiting,
        created: s.created,
        destroyed: s.destroyed,
        failedConnections: s.failures,
        timeouts: s.timeouts,
        requests
      }))
    }
  })
