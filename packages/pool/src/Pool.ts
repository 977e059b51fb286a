/**
 * A pool of interchangeable resources: the single-key case of
 * {@link KeyedPool}, on the same engine.
 *
 * ```ts
 * import { Effect, type Scope } from "effect"
 * import { Pool } from "@cistern/pool"
 *
 * interface Connection {
 *   readonly id: number
 * }
 * declare const connect: Effect.Effect<Connection, Error, Scope.Scope> // its finalizer closes it
 * declare const query: (conn: Connection, sql: string) => Effect.Effect<unknown>
 *
 * const program = Effect.gen(function* () {
 *   const pool = yield* Pool.make({ acquire: connect, max: 10, acquireTimeout: "5 seconds" })
 *   return yield* pool.use((conn) => query(conn, "select 1"))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import type * as Layer from "effect/Layer"
import type { Pipeable } from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Types from "effect/Types"
import * as internal from "./internal/pool.js"
import type * as KeyedPool from "./KeyedPool.js"
import type * as PoolConfig from "./PoolConfig.js"
import type { PoolError } from "./PoolError.js"
import type { CleanupReport, ItemDetails, PoolStats } from "./PoolStats.js"

/**
 * The symbol that marks a value as a {@link Pool}.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = internal.TypeId as TypeId_

/**
 * The type of {@link TypeId}.
 *
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

type TypeId_ = typeof TypeId

/**
 * A pool of `A`s whose acquisition may fail with `E`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Pool<in out A, out E = never> extends Pipeable {
  readonly [TypeId]: { readonly _A: Types.Invariant<A>; readonly _E: Types.Covariant<E> }
  /** Leases an item for as long as the caller's scope stays open. */
  readonly get: Effect.Effect<A, E | PoolError, Scope.Scope>
  /** Leases an item for the duration of `f`, without allocating a scope. */
  readonly use: <B, E2, R2>(f: (a: A) => Effect.Effect<B, E2, R2>) => Effect.Effect<B, E | E2 | PoolError, R2>
  /** A stream holding a lease until it ends, fails or is interrupted. */
  readonly stream: <B, E2, R2>(f: (a: A) => Stream.Stream<B, E2, R2>) => Stream.Stream<B, E | E2 | PoolError, R2>
  /** Destroys the item instead of returning it (now, if it is idle). */
  readonly invalidate: (item: A) => Effect.Effect<void>
  /** Creates items until there are `count` (default `minIdle`), and leaves them idle. */
  readonly prewarm: (count?: number) => Effect.Effect<void, E | PoolError>
  /** Counts and the configuration in force. */
  readonly stats: Effect.Effect<PoolStats>
  /** Every live item with its state, age and idle time. */
  readonly items: Effect.Effect<ReadonlyArray<ItemDetails>>
  /** Expires idle items now. */
  readonly cleanup: Effect.Effect<CleanupReport>
  /** Destroys up to `count` idle items, least recently used first; succeeds with how many. */
  readonly evictIdle: (count: number) => Effect.Effect<number>
  /** Retires every item (idle now, leased when returned); succeeds with how many. */
  readonly retireAll: Effect.Effect<number>
}

/**
 * The options of {@link KeyedPool.Options} that concern keys, which a single
 * pool does not take: its one key needs no id, fingerprint, description,
 * per-key metric labels, or limits across keys.
 *
 * @since 0.1.0
 * @category models
 */
export type KeyOptions =
  | "acquire"
  | "maxPerKey"
  | "maxTotal"
  | "maxKeys"
  | "minIdlePerKey"
  | "keyId"
  | "fingerprint"
  | "describeKey"
  | "metricsPerKey"
  | "group"
  | "maxPerGroup"
  | "name"
  | "gate"

/**
 * How to make a pool: every option of {@link KeyedPool.Options} that does
 * not concern keys — validation, health checks, heartbeats, retries, the
 * circuit breaker, timeouts, intervals, creation backoff, spans and metrics —
 * with the same meaning and defaults, plus the single pool's `max` and
 * `minIdle`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<A, E, R, EG = never, RG = never>
  extends Omit<KeyedPool.Options<unknown, A, E, R>, KeyOptions> {
  /** Creates an item; its finalizers (in the provided `Scope`) destroy it. */
  readonly acquire: Effect.Effect<A, E, R>
  /**
   * A permit to take before every creation, held by the item until it is
   * destroyed (a cluster-wide connection budget); see
   * {@link KeyedPool.Options.gate}. Its `key` is the pool's one internal key.
   */
  readonly gate?: ((context: KeyedPool.GateContext<unknown>) => Effect.Effect<unknown, EG, RG>) | undefined
  /** The most items at once, counting those being created. Default 10. */
  readonly max?: number | undefined
  /** Idle items that idle expiry keeps, created right away and refilled. Default 0. */
  readonly minIdle?: number | undefined
  /** The pool's name in stats, errors and logs; registers it in a provided `PoolRegistry`. Default `"pool"`. */
  readonly name?: string | undefined
}

/**
 * Makes a pool owned by the current scope; closing the scope drains and shuts
 * it down (see {@link KeyedPool.make}). With `minIdle`, that many items are
 * created in the background right away, without competing with callers; a
 * failed creation is logged and retried after the creation backoff, and the
 * pool refills whenever it falls below `minIdle`. A `minIdle` above `max`
 * is rejected (an `InvalidOption` defect naming `minIdle`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <A, E, R, EG = never, RG = never>(
  options: Options<A, E, R, EG, RG>
) => Effect.Effect<Pool<A, E | EG>, never, Scope.Scope | Exclude<R | RG, Scope.Scope>> = internal.make

/**
 * Provides a pool as the service `tag`, for the lifetime of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: <I, A, E, R, EG = never, RG = never>(
  tag: Context.Tag<I, Pool<A, E | EG>>,
  options: Options<A, E, R, EG, RG>
) => Layer.Layer<I, never, Exclude<R | RG, Scope.Scope>> = internal.layer

/**
 * Options for {@link layerConfig}: the pool's options, plus settings read
 * from `Config` (validated, naming the bad variable and value). The per-key
 * limit and floor of {@link PoolConfig.settings} are this pool's `max` and
 * `minIdle` (`MAX_PER_KEY`, `MIN_IDLE_PER_KEY` unless renamed); a total limit,
 * when set, caps `max`. Options given here directly are defaults that the
 * config overrides when its variable is set.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions<A, E, R, EG = never, RG = never> extends Options<A, E, R, EG, RG> {
  readonly config: Config.Config<PoolConfig.Settings>
}

/**
 * Like {@link layer}, with settings read from `Config`:
 *
 * ```ts
 * import { Context, type Effect, type Scope } from "effect"
 * import { Pool, PoolConfig } from "@cistern/pool"
 *
 * interface Connection {
 *   readonly id: number
 * }
 * declare const connect: Effect.Effect<Connection, Error, Scope.Scope>
 * declare const ping: (conn: Connection) => Effect.Effect<void, Error>
 * class Database extends Context.Tag("app/Database")<Database, Pool.Pool<Connection, Error>>() {}
 *
 * Pool.layerConfig(Database, {
 *   acquire: connect,
 *   validate: ping,
 *   config: PoolConfig.settings({ maxPerKey: "DB_POOL_SIZE", acquireTimeout: "DB_ACQUIRE_TIMEOUT" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: <I, A, E, R, EG = never, RG = never>(
  tag: Context.Tag<I, Pool<A, E | EG>>,
  options: ConfigOptions<A, E, R, EG, RG>
) => Layer.Layer<I, ConfigError.ConfigError, Exclude<R | RG, Scope.Scope>> = internal.layerConfig

/**
 * Leases an item for the duration of `f`. See {@link Pool.use}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const use: {
  <A, B, E2, R2>(
    f: (a: A) => Effect.Effect<B, E2, R2>
  ): <E>(self: Pool<A, E>) => Effect.Effect<B, E | E2 | PoolError, R2>
  <A, E, B, E2, R2>(self: Pool<A, E>, f: (a: A) => Effect.Effect<B, E2, R2>): Effect.Effect<B, E | E2 | PoolError, R2>
} = dual(2, <A, E, B, E2, R2>(self: Pool<A, E>, f: (a: A) => Effect.Effect<B, E2, R2>) => self.use(f))

/**
 * A stream holding a lease while it runs. See {@link Pool.stream}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const stream: {
  <A, B, E2, R2>(
    f: (a: A) => Stream.Stream<B, E2, R2>
  ): <E>(self: Pool<A, E>) => Stream.Stream<B, E | E2 | PoolError, R2>
  <A, E, B, E2, R2>(self: Pool<A, E>, f: (a: A) => Stream.Stream<B, E2, R2>): Stream.Stream<B, E | E2 | PoolError, R2>
} = dual(2, <A, E, B, E2, R2>(self: Pool<A, E>, f: (a: A) => Stream.Stream<B, E2, R2>) => self.stream(f))

/**
 * Marks an item as broken. See {@link Pool.invalidate}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const invalidate: {
  <A>(item: A): <E>(self: Pool<A, E>) => Effect.Effect<void>
  <A, E>(self: Pool<A, E>, item: A): Effect.Effect<void>
} = dual(2, <A, E>(self: Pool<A, E>, item: A) => self.invalidate(item))

/**
 * Creates items until there are `count`, and leaves them idle. See {@link Pool.prewarm}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const prewarm: {
  (count: number): <A, E>(self: Pool<A, E>) => Effect.Effect<void, E | PoolError>
  <A, E>(self: Pool<A, E>, count: number): Effect.Effect<void, E | PoolError>
} = dual(2, <A, E>(self: Pool<A, E>, count: number) => self.prewarm(count))

/**
 * Whether a value is a pool.
 *
 * @since 0.1.0
 * @category refinements
 */
export const isPool: (u: unknown) => u is Pool<unknown, unknown> = internal.isPool
