/**
 * A pool of resources per key (a tenant, a `user × upstream` pair, a target
 * host), with per-key and total limits, idle expiry, credential-aware reuse
 * and leases that end only by closing scopes.
 *
 * ```ts
 * import { Context, Effect, type Scope } from "effect"
 * import { KeyedPool } from "@cistern/pool"
 *
 * interface Connection {
 *   readonly host: string
 * }
 * class ConnectError extends Error {}
 * declare const connect: (host: string) => Effect.Effect<Connection, ConnectError, Scope.Scope>
 * declare const query: (conn: Connection, sql: string) => Effect.Effect<unknown>
 *
 * class Upstreams extends Context.Tag("app/Upstreams")<
 *   Upstreams,
 *   KeyedPool.KeyedPool<string, Connection, ConnectError>
 * >() {}
 *
 * const UpstreamsLive = KeyedPool.layer(Upstreams, {
 *   acquire: (host) => connect(host), // its finalizer closes the connection
 *   maxPerKey: 10,
 *   maxTotal: 100,
 *   idleTimeout: "5 minutes"
 * })
 *
 * const program = Effect.gen(function* () {
 *   const pool = yield* Upstreams
 *   return yield* pool.use("db-1", (conn) => query(conn, "select 1"))
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import type { Pipeable } from "effect/Pipeable"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Types from "effect/Types"
import type * as CircuitBreaker from "./CircuitBreaker.js"
import type * as HealthCheck from "./HealthCheck.js"
import * as internal from "./internal/keyedPool.js"
import type * as PoolConfig from "./PoolConfig.js"
import type { PoolError } from "./PoolError.js"
import type * as PoolMetrics from "./PoolMetrics.js"
import type { CleanupReport, ItemDetails, PoolStats } from "./PoolStats.js"

/**
 * The symbol that marks a value as a {@link KeyedPool}.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = internal.TypeId as TypeId_

/**
 * The symbol that marks a value as a {@link KeyedPool}.
 *
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

type TypeId_ = typeof TypeId

/**
 * A keyed pool of `A`s whose acquisition may fail with `E`.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyedPool<in K, in out A, out E = never> extends Pipeable {
  readonly [TypeId]: {
    readonly _K: Types.Contravariant<K>
    readonly _A: Types.Invariant<A>
    readonly _E: Types.Covariant<E>
  }

  /**
   * Leases an item of `key` for as long as the caller's scope stays open.
   * Closing the scope (on success, failure or interruption) gives it back, or
   * destroys it when it was invalidated, outlived `maxLifetime`, or its
   * credentials changed.
   */
  readonly get: (key: K) => Effect.Effect<A, E | PoolError, Scope.Scope>

  /**
   * Leases an item of `key` for the duration of `f`. Cheaper than
   * `Effect.scoped(get(key))`: no scope is allocated.
   */
  readonly use: <B, E2, R2>(key: K, f: (a: A) => Effect.Effect<B, E2, R2>) => Effect.Effect<B, E | E2 | PoolError, R2>

  /**
   * A stream that holds a lease of `key` until it ends, fails or is
   * interrupted (a client disconnect, a `Stream.take`, a timeout).
   */
  readonly stream: <B, E2, R2>(
    key: K,
    f: (a: A) => Stream.Stream<B, E2, R2>
  ) => Stream.Stream<B, E | E2 | PoolError, R2>

  /**
   * Marks an item as broken: if leased, it is destroyed instead of returned
   * when its lease ends (shared by several callers, see `maxLeasesPerItem`:
   * it takes no new lease from now on and is destroyed when its last lease
   * ends); if idle, it is destroyed now. O(1); unknown items are
   * ignored. Items are tracked by identity, so values may compare equal
   * (permits, numbers): of several items holding the value, the caller's own
   * lease is meant, else an idle one.
   */
  readonly invalidate: (item: A) => Effect.Effect<void>

  /**
   * Pre-warms a key: makes sure it has `count` items (default
   * `minIdlePerKey`, capped at its limit), creating only the missing ones
   * now, `createConcurrency` at a time, and leaves them idle (or hands them
   * to waiting callers). It holds no lease and never waits for one, so it
   * cannot deadlock with callers; when the total is full it stops early.
   * Fails like `get` would: `PoolClosed`, `CircuitOpen`, `KeyLimitExceeded`
   * or the resource's own error.
   */
  readonly prewarm: (key: K, count?: number) => Effect.Effect<void, E | PoolError>

  /** Totals, per-key counts and the configuration in force. */
  readonly stats: Effect.Effect<PoolStats>

  /** Every live item with its state, age and idle time. O(items): for admin views, not hot paths. */
  readonly items: Effect.Effect<ReadonlyArray<ItemDetails>>

  /**
   * Expires idle items now (what the cleanup fiber does every
   * `cleanupInterval`) and reports the pool size before and after.
   */
  readonly cleanup: Effect.Effect<CleanupReport>

  /**
   * Destroys up to `count` idle items, least recently used first, and
   * succeeds with how many it destroyed. Leased items are never touched. For
   * giving back a limit shared with others, such as an instance holding more
   * than its fair share of a cluster-wide connection budget.
   */
  readonly evictIdle: (count: number) => Effect.Effect<number>

  /**
   * Retires every item: idle ones are destroyed now, leased ones when their
   * lease ends (they take no new shared lease); callers get new items from
   * then on. Succeeds with how many items it retired. For when the permits
   * behind the items are gone, such as a cluster budget's lease lost.
   */
  readonly retireAll: Effect.Effect<number>
}

/**
 * What a {@link Options.gate} is given: the key of the item about to be
 * created, its group, and a way to make room.
 *
 * @since 0.1.0
 * @category models
 */
export interface GateContext<out K> {
  /** The key of the item about to be created. */
  readonly key: K
  /** The key's tenant group (see {@link Options.group}), or `undefined` in a pool without groups. */
  readonly group: string | undefined
  /**
   * Destroys this pool's least recently used idle item of another key (of
   * the same group first) and succeeds with whether there was one. The item
   * closes on a fiber of its own, so whatever its scope holds (a permit) is
   * given back a moment later. A gate runs it when its limit is full, before
   * it waits.
   */
  readonly evictIdle: Effect.Effect<boolean>
}

/**
 * How to make a keyed pool: how to acquire an item, and its limits and timings
 * (see {@link PoolConfig.Settings} for the defaults).
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<K, A, E, R, EG = never, RG = never> extends Omit<PoolConfig.Settings, "maxPerKey" | "retry"> {
  /**
   * Creates an item for `key`. Its finalizers (added to the provided `Scope`,
   * e.g. with `Effect.acquireRelease`) destroy it; they run exactly once, on
   * a fiber of their own (no caller waits for another's finalizer). One that
   * throws instead of returning an Effect fails its creation with that defect.
   * A caller's creation runs on a fiber of the pool's (with the fiber refs of
   * where the pool was made, such as its log annotations), because the item
   * may serve another caller; a traced caller's span is its parent.
   */
  readonly acquire: (key: K) => Effect.Effect<A, E, R>
  /**
   * A permit to take before every creation (a caller's, a refill's or a
   * pre-warm's), held by the item until it is destroyed: for a limit shared
   * with other processes, such as a cluster-wide connection budget. It runs
   * in the item's own `Scope` after the key's creation backoff and before
   * `acquire`, so whatever it adds to the scope (the permit's return) runs
   * when the item is destroyed, or at once when the creation fails. While it
   * waits, the creation counts against the pool's limits and the caller's
   * `acquireTimeout` bounds the caller (not the gate, which needs a bound of
   * its own); `createTimeout` bounds only `acquire`. Its failure fails the
   * creation, and the caller it was started for gets that error; it is no
   * connection failure (no backoff, no circuit-breaker verdict).
   */
  readonly gate?: ((context: GateContext<K>) => Effect.Effect<unknown, EG, RG>) | undefined
  /**
   * Checks an idle item before it is handed out; a failing item is destroyed
   * and the next idle or a new one is tried, within the caller's one
   * `acquireTimeout`. Bounded by `validateTimeout`. One that throws counts
   * as a failed validation. A failed validation gives the circuit breaker no
   * verdict: the caller's next item does.
   */
  readonly validate?: ((item: A) => Effect.Effect<unknown, unknown>) | undefined
  /** Skip `validate` for an item idle less than this (HikariCP's trick). Default 0: always validate. */
  readonly validateAfter?: Duration.DurationInput | undefined
  /** Bound of one validation. Default 5 seconds. */
  readonly validateTimeout?: Duration.DurationInput | undefined
  /** Periodic checks of idle items; see {@link HealthCheck.Check}. */
  readonly healthCheck?: HealthCheck.Check<A> | undefined
  /** Keep-alives to idle items; see {@link HealthCheck.Heartbeat}. */
  readonly heartbeat?: HealthCheck.Heartbeat<A> | undefined
  /** Check, heartbeat and validation results each key keeps. Default 100. */
  readonly checkHistory?: number | undefined
  /**
   * Tells connection failures from caller faults. A lease that fails with a
   * connection error destroys its item (instead of returning it), counts for
   * the circuit breaker, and is retried by `use` when retries are on.
   * One that throws counts the error as a connection failure (the item is
   * treated as broken); the caller still gets its own error.
   * Default: {@link HealthCheck.isConnectionError}.
   */
  readonly isConnectionError?: ((error: unknown) => boolean) | undefined
  /**
   * Whether `use` retries connection failures on a fresh item: `true` for
   * {@link HealthCheck.defaultRetry}, or a schedule of your own. Interrupting
   * the caller during a backoff stops at once. Default false (the `RETRY`
   * setting of {@link PoolConfig.settings}).
   */
  readonly retry?: boolean | Schedule.Schedule<unknown, unknown> | undefined
  /**
   * After a failed creation, the next one of that key waits this long,
   * doubling per failure up to `max`, with jitter. `false` turns it off.
   * Default `{ initial: "100 millis", max: "10 seconds" }`.
   */
  readonly createBackoff?:
    | { readonly initial?: Duration.DurationInput | undefined; readonly max?: Duration.DurationInput | undefined }
    | false
    | undefined
  /**
   * Label the metrics of this many keys with a `key` label of their own; the
   * rest count under `key="other"`. Default 0: pool-level labels only. See
   * {@link PoolMetrics}.
   */
  readonly metricsPerKey?: number | undefined
  /**
   * Trace waits (`KeyedPool.get`) and creations (`KeyedPool.acquire`) as
   * spans. Off by default: a span per wait costs about as much as the rest of
   * a contended lease, and the span of a creation stays reachable from the
   * item's finalizer for the item's whole life. Turn it on when you trace.
   */
  readonly spans?: boolean | undefined
  /** How often the occupancy gauges are sampled. Default 5 seconds. */
  readonly metricsInterval?: Duration.DurationInput | undefined
  /** A circuit breaker per key; see {@link CircuitBreaker}. Default: none. */
  readonly breaker?: CircuitBreaker.Options | false | undefined
  /**
   * The tenant a key belongs to (a user, across all of their upstreams): keys
   * of one group share `maxPerGroup`. Read once, when a key is first seen.
   * Default: no groups.
   */
  readonly group?: ((key: K) => string) | undefined
  /**
   * Items per group, across its keys, counting those being created; a
   * function sets a different limit per group. Checked with the key and total
   * limits on every admission: a group at its limit first evicts its own
   * oldest idle item (of any of its keys), and only then does the caller
   * wait. Waiters stay FIFO per key, and a group at its limit never holds up
   * another group's waiters when the total is exhausted. Default: unbounded.
   */
  readonly maxPerGroup?: number | ((group: string) => number) | undefined
  /** Items per key; a function sets a different limit per key. Default 10. */
  readonly maxPerKey?: number | ((key: K) => number) | undefined
  /**
   * Groups keys: keys with the same id share items and limits. Default: the
   * key itself, compared with `Equal` (so `Data` structs work as keys).
   */
  readonly keyId?: ((key: K) => string) | undefined
  /**
   * The credential version of a key (for example a hash of its token). When a
   * key of the same group comes back with another fingerprint, items of the
   * old one are never handed out again and are destroyed once returned. A
   * late caller still holding a fingerprint the key moved past (one of the
   * last 8) does not move it back: it is served items of the current one.
   */
  readonly fingerprint?: ((key: K) => string) | undefined
  /**
   * How stats, errors and logs show a key. Default: a short stable hash of its
   * id, so credentials in keys never leak.
   */
  readonly describeKey?: ((key: K) => string) | undefined
  /**
   * The pool's name in stats, logs and metrics. Default `"pool"`. With a
   * `PoolRegistry` in the context, a pool given a name registers itself
   * there for as long as its scope is open.
   */
  readonly name?: string | undefined
}

/**
 * Makes a keyed pool owned by the current scope. Closing that scope shuts it
 * down: new callers and waiters fail with `PoolClosed`, idle items are
 * destroyed, leases get `drainTimeout` to come back before their fibers are
 * interrupted, and every item's finalizer runs exactly once. Shutdown takes
 * at most `drainTimeout`: a finalizer still running then (one that hangs) is
 * left to finish on its own fiber, and a warning counts it.
 *
 * Invalid options (a zero limit, a negative or NaN duration, a zero interval,
 * a string where a number belongs, `minIdlePerKey` above `maxPerKey`) are
 * programmer errors: `make` dies with an `InvalidOption` naming the option
 * and value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <K, A, E, R, EG = never, RG = never>(
  options: Options<K, A, E, R, EG, RG>
) => Effect.Effect<KeyedPool<K, A, E | EG>, never, Scope.Scope | Exclude<R | RG, Scope.Scope>> = internal.make

/**
 * Provides a keyed pool as the service `tag`, for the lifetime of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, K, A, E, R, EG = never, RG = never>(
  tag: Context.Tag<I, KeyedPool<K, A, E | EG>>,
  options: Options<K, A, E, R, EG, RG>
): Layer.Layer<I, never, Exclude<R | RG, Scope.Scope>> => Layer.scoped(tag, make(options))

/**
 * Options for {@link layerConfig}: the functions, plus the settings read from
 * `Config` (validated, naming the bad variable and value). Settings given here
 * directly are defaults that the config overrides when its variable is set.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions<K, A, E, R, EG = never, RG = never> extends Options<K, A, E, R, EG, RG> {
  readonly config: Config.Config<PoolConfig.Settings>
}

/**
 * Like {@link layer}, with settings read from `Config`:
 *
 * ```ts
 * import { Context, type Effect, type Scope } from "effect"
 * import { KeyedPool, PoolConfig } from "@cistern/pool"
 *
 * interface Connection {
 *   readonly user: string
 * }
 * declare const connect: (user: string) => Effect.Effect<Connection, Error, Scope.Scope>
 * class Upstreams extends Context.Tag("app/Upstreams")<Upstreams, KeyedPool.KeyedPool<string, Connection, Error>>() {}
 *
 * KeyedPool.layerConfig(Upstreams, {
 *   acquire: connect,
 *   config: PoolConfig.settings({ maxPerKey: "MAX_CONNECTIONS_PER_USER", maxTotal: "MAX_TOTAL_CONNECTIONS" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = <I, K, A, E, R, EG = never, RG = never>(
  tag: Context.Tag<I, KeyedPool<K, A, E | EG>>,
  options: ConfigOptions<K, A, E, R, EG, RG>
): Layer.Layer<I, ConfigError.ConfigError, Exclude<R | RG, Scope.Scope>> =>
  Layer.scoped(
    tag,
    Effect.flatMap(Config.unwrap(options.config), (settings) => make({ ...options, ...definedOnly(settings) }))
  )

const definedOnly = (settings: PoolConfig.Settings): PoolConfig.Settings =>
  Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined))

/**
 * Leases an item of `key` for the caller's scope. See {@link KeyedPool.get}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const get: {
  <K>(key: K): <A, E>(self: KeyedPool<K, A, E>) => Effect.Effect<A, E | PoolError, Scope.Scope>
  <K, A, E>(self: KeyedPool<K, A, E>, key: K): Effect.Effect<A, E | PoolError, Scope.Scope>
} = dual(2, <K, A, E>(self: KeyedPool<K, A, E>, key: K) => self.get(key))

/**
 * Leases an item of `key` for the duration of `f`. See {@link KeyedPool.use}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const use: {
  <K, A, B, E2, R2>(
    key: K,
    f: (a: A) => Effect.Effect<B, E2, R2>
  ): <E>(self: KeyedPool<K, A, E>) => Effect.Effect<B, E | E2 | PoolError, R2>
  <K, A, E, B, E2, R2>(
    self: KeyedPool<K, A, E>,
    key: K,
    f: (a: A) => Effect.Effect<B, E2, R2>
  ): Effect.Effect<B, E | E2 | PoolError, R2>
} = dual(3, <K, A, E, B, E2, R2>(self: KeyedPool<K, A, E>, key: K, f: (a: A) => Effect.Effect<B, E2, R2>) =>
  self.use(key, f)
)

/**
 * Marks an item as broken. See {@link KeyedPool.invalidate}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const invalidate: {
  <A>(item: A): <K, E>(self: KeyedPool<K, A, E>) => Effect.Effect<void>
  <K, A, E>(self: KeyedPool<K, A, E>, item: A): Effect.Effect<void>
} = dual(2, <K, A, E>(self: KeyedPool<K, A, E>, item: A) => self.invalidate(item))

/**
 * Whether a value is a keyed pool.
 *
 * @since 0.1.0
 * @category refinements
 */
export const isKeyedPool: (u: unknown) => u is KeyedPool<unknown, unknown, unknown> = internal.isKeyedPool
