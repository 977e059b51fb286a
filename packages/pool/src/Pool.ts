/**
 * A pool of interchangeable resources: the single-key case of
 * {@link KeyedPool}, on the same engine.
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Pool } from "@cistern/pool"
 *
 * const program = Effect.gen(function* () {
 *   const pool = yield* Pool.make({ acquire: connect, max: 10, acquireTimeout: "5 seconds" })
 *   return yield* pool.use((conn) => query(conn, "select 1"))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Types from "effect/Types"
import * as internal from "./internal/keyedPool.js"
import type * as KeyedPool from "./KeyedPool.js"
import type * as PoolConfig from "./PoolConfig.js"
import type { PoolError } from "./PoolError.js"
import type { CleanupReport, ItemDetails, PoolStats } from "./PoolStats.js"

/**
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = Symbol.for("@cistern/pool/Pool")

/**
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

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
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, E, R>
  extends Omit<PoolConfig.Settings, "maxPerKey" | "maxTotal" | "maxKeys" | "minIdlePerKey"> {
  /** Creates an item; its finalizers (in the provided `Scope`) destroy it. */
  readonly acquire: Effect.Effect<A, E, R>
  /** The most items at once, counting those being created. Default 10. */
  readonly max?: number | undefined
  /** Idle items that idle expiry keeps. Default 0. */
  readonly minIdle?: number | undefined
  /** The pool's name in stats, errors and logs; registers it in a provided `PoolRegistry`. Default `"pool"`. */
  readonly name?: string | undefined
}

const theKey = Symbol.for("@cistern/pool/Pool/key")

class PoolImpl<A, E> implements Pool<A, E> {
  readonly [TypeId] = { _A: (_: A) => _, _E: (_: never): E => _ }
  readonly get: Effect.Effect<A, E | PoolError, Scope.Scope>
  readonly stats: Effect.Effect<PoolStats>
  readonly items: Effect.Effect<ReadonlyArray<ItemDetails>>
  readonly cleanup: Effect.Effect<CleanupReport>

  constructor(readonly keyed: KeyedPool.KeyedPool<symbol, A, E>) {
    this.get = keyed.get(theKey)
    this.stats = keyed.stats
    this.items = keyed.items
    this.cleanup = keyed.cleanup
  }

  use<B, E2, R2>(f: (a: A) => Effect.Effect<B, E2, R2>): Effect.Effect<B, E | E2 | PoolError, R2> {
    return this.keyed.use(theKey, f)
  }

  stream<B, E2, R2>(f: (a: A) => Stream.Stream<B, E2, R2>): Stream.Stream<B, E | E2 | PoolError, R2> {
    return this.keyed.stream(theKey, f)
  }

  invalidate(item: A): Effect.Effect<void> {
    return this.keyed.invalidate(item)
  }

  prewarm(count?: number): Effect.Effect<void, E | PoolError> {
    return this.keyed.prewarm(theKey, count)
  }

  pipe() {
    // biome-ignore lint/complexity/noArguments: pipeArguments reads the arguments object, as Effect's own data types do
    return pipeArguments(this, arguments)
  }
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
export const make = <A, E, R>(
  options: Options<A, E, R>
): Effect.Effect<Pool<A, E>, never, Scope.Scope | Exclude<R, Scope.Scope>> => {
  const { acquire, max, minIdle, name, ...timings } = options
  return Effect.map(
    internal.make<symbol, A, E, R>(
      {
        ...timings,
        acquire: () => acquire,
        maxPerKey: max ?? 10,
        maxTotal: Number.POSITIVE_INFINITY,
        maxKeys: 1,
        minIdlePerKey: minIdle,
        name,
        describeKey: () => name ?? "pool"
      },
      { maxPerKey: "max", minIdlePerKey: "minIdle" }
    ),
    (keyed) => new PoolImpl(keyed)
  ).pipe(
    Effect.tap((pool) =>
      (minIdle ?? 0) > 0
        ? Effect.forkScoped(
            pool.prewarm().pipe(
              Effect.catchAllCause((cause) => Effect.logWarning("pre-warming the pool failed", cause)),
              Effect.interruptible,
              Effect.annotateLogs({ package: "@cistern/pool", module: "Pool" })
            )
          )
        : Effect.void
    )
  )
}

/**
 * Provides a pool as the service `tag`, for the lifetime of the layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, A, E, R>(
  tag: Context.Tag<I, Pool<A, E>>,
  options: Options<A, E, R>
): Layer.Layer<I, never, Exclude<R, Scope.Scope>> => Layer.scoped(tag, make(options))
