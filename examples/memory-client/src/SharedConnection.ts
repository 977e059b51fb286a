/**
 * One long-lived connection, held in a Cistern pool of one item whose lease
 * is shared: created on first use, used by every caller at once (up to
 * `maxConcurrentCalls`), health-checked and kept alive while no call holds
 * it, destroyed and rebuilt when it breaks, and closed with the scope.
 *
 * The only module that knows which pool holds it: a `Pool` with `max: 1` and
 * `maxLeasesPerItem`. A call that finds the connection broken marks it broken
 * for everyone: no new call is given it, the calls on it finish, and the last
 * one out closes it; the next call (or the retry) opens the new one.
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
  /** Calls in flight at once on the connection; more wait their turn. */
  readonly maxConcurrentCalls: number
}

/** Holds one connection for the lifetime of the scope. */
export const make = <A, E, R>(
  options: Options<A, E, R>
): Effect.Effect<SharedConnection<A, E>, never, Scope.Scope | Exclude<R, Scope.Scope>> =>
  Effect.map(
    Pool.make({
      name: options.name,
      acquire: options.acquire,
      // One connection, shared: up to `maxConcurrentCalls` callers hold it at once.
      max: 1,
      maxLeasesPerItem: options.maxConcurrentCalls,
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
