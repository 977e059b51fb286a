/**
 * One long-lived connection, held in a Cistern pool of one item: created on
 * first use, health-checked and kept alive while idle, destroyed and rebuilt
 * when it breaks, and closed with the scope.
 *
 * The only module that knows which pool holds it: a `Pool` with `max: 1`.
 * Its leases are exclusive today, so concurrent callers take turns on the
 * connection (queued in the pool, first come first served). Once the pool
 * can share one item between several leases (`maxLeasesPerItem`), that
 * option is added here and nothing outside this file changes.
 */
import { type HealthCheck, Pool, type PoolError, type PoolStats } from "@cistern/pool"
import { Duration, Effect, type Schedule, type Scope } from "effect"

/** A connection shared by every caller. */
export interface SharedConnection<A, E> {
  /** Runs `f` with the connection; connection failures are retried on a rebuilt one when `retry` is set. */
  readonly use: <B, E2, R2>(f: (a: A) => Effect.Effect<B, E2, R2>) => Effect.Effect<B, E | E2 | PoolError.PoolError, R2>
  /** The pool's counts, health history and configuration. */
  readonly stats: Effect.Effect<PoolStats.PoolStats>
}

/** How to hold the connection. */
export interface Options<A, E, R> {
  /** The pool's name in stats and logs. */
  readonly name: string
  /** Opens (and validates) a connection; its scope's finalizers close it. */
  readonly acquire: Effect.Effect<A, E, R>
  readonly healthCheck: HealthCheck.Check<A>
  /** Every how long the idle connection is checked. */
  readonly healthCheckInterval: Duration.Duration
  readonly heartbeat: HealthCheck.Heartbeat<A>
  /** Every how long the idle connection gets a heartbeat. */
  readonly heartbeatInterval: Duration.Duration
  /** Tells a broken connection from an answer. */
  readonly isConnectionError: (error: unknown) => boolean
  /** Bound of one `acquire`. */
  readonly createTimeout: Duration.Duration
  /** Retries of a call that failed with a connection error, each on a rebuilt connection; `false`: none. */
  readonly retry: Schedule.Schedule<unknown, unknown> | false
}

/** Holds one connection for the lifetime of the scope. */
export const make = <A, E, R>(
  options: Options<A, E, R>
): Effect.Effect<SharedConnection<A, E>, never, Scope.Scope | Exclude<R, Scope.Scope>> =>
  Effect.map(
    Pool.make({
      name: options.name,
      acquire: options.acquire,
      // One connection; leases are exclusive until the pool can share an item between leases.
      max: 1,
      // No floor (`minIdle`): the pool would refill it after every failed creation, racing the
      // caller's own retries; the client rebuilds after a failed check itself, once (see MemoryClient).
      minIdle: 0,
      // A long-lived client: idle is its normal state, never a reason to close it.
      idleTimeout: Duration.infinity,
      createTimeout: options.createTimeout,
      // The call's retry schedule is the one backoff: the pool's own creation backoff would add a random one.
      createBackoff: false,
      healthCheck: options.healthCheck,
      healthCheckInterval: options.healthCheckInterval,
      heartbeat: options.heartbeat,
      heartbeatInterval: options.heartbeatInterval,
      isConnectionError: options.isConnectionError,
      retry: options.retry
    }),
    (pool): SharedConnection<A, E> => ({
      use: (f) => pool.use(f),
      stats: pool.stats
    })
  )
