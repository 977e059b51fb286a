import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { pipeArguments } from "effect/Pipeable"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { KeyedPool } from "../KeyedPool.js"
import type { ConfigOptions, Options, Pool, TypeId as PoolTypeId } from "../Pool.js"
import type * as PoolConfig from "../PoolConfig.js"
import type { PoolError } from "../PoolError.js"
import type { CleanupReport, ItemDetails, PoolStats } from "../PoolStats.js"
import * as keyed from "./keyedPool.js"

/** @internal */
export const TypeId: PoolTypeId = Symbol.for("@cistern/pool/Pool") as PoolTypeId

/** The one key of a `Pool`'s engine: a `Pool` is a `KeyedPool` with a single key. */
const theKey = Symbol.for("@cistern/pool/Pool/key")

/** A thin shell over a keyed pool with one key: every method forwards with that key. */
class PoolImpl<A, E> implements Pool<A, E> {
  readonly [TypeId] = { _A: (_: A) => _, _E: (_: never): E => _ }
  readonly get: Effect.Effect<A, E | PoolError, Scope.Scope>
  readonly stats: Effect.Effect<PoolStats>
  readonly items: Effect.Effect<ReadonlyArray<ItemDetails>>
  readonly cleanup: Effect.Effect<CleanupReport>
  readonly retireAll: Effect.Effect<number>

  constructor(readonly keyed: KeyedPool<symbol, A, E>) {
    this.get = keyed.get(theKey)
    this.stats = keyed.stats
    this.items = keyed.items
    this.cleanup = keyed.cleanup
    this.retireAll = keyed.retireAll
  }

  evictIdle(count: number): Effect.Effect<number> {
    return this.keyed.evictIdle(count)
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

/** @internal */
export const make = <A, E, R, EG = never, RG = never>(
  options: Options<A, E, R, EG, RG>
): Effect.Effect<Pool<A, E | EG>, never, Scope.Scope | Exclude<R | RG, Scope.Scope>> => {
  // Everything but the single-pool names passes through to the keyed engine unchanged.
  const { acquire, gate, max, minIdle, name, ...rest } = options
  return Effect.map(
    keyed.make<symbol, A, E, R, EG, RG>(
      {
        ...rest,
        acquire: () => acquire,
        gate,
        maxPerKey: max ?? 10,
        maxTotal: Number.POSITIVE_INFINITY,
        maxKeys: 1,
        minIdlePerKey: minIdle,
        name,
        describeKey: () => name ?? "pool"
      },
      { maxPerKey: "max", minIdlePerKey: "minIdle" }
    ),
    (pool) => new PoolImpl(pool)
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

/** @internal */
export const layer = <I, A, E, R, EG = never, RG = never>(
  tag: Context.Tag<I, Pool<A, E | EG>>,
  options: Options<A, E, R, EG, RG>
): Layer.Layer<I, never, Exclude<R | RG, Scope.Scope>> => Layer.scoped(tag, make(options))

/**
 * Settings read from configuration, in a single pool's words: the per-key
 * limit and floor are the pool's `max` and `minIdle`; a total limit, when
 * set, caps `max`; the distinct-key limit has no meaning for one key.
 *
 * @internal
 */
export const fromSettings = (settings: PoolConfig.Settings): Partial<Options<unknown, unknown, unknown>> => {
  const { maxPerKey, maxTotal, maxKeys: _maxKeys, minIdlePerKey, ...rest } = settings
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) out[k] = v
  const max =
    maxPerKey !== undefined && maxTotal !== undefined ? Math.min(maxPerKey, maxTotal) : (maxPerKey ?? maxTotal)
  if (max !== undefined) out.max = max
  if (minIdlePerKey !== undefined) out.minIdle = minIdlePerKey
  return out
}

/** @internal */
export const layerConfig = <I, A, E, R, EG = never, RG = never>(
  tag: Context.Tag<I, Pool<A, E | EG>>,
  options: ConfigOptions<A, E, R, EG, RG>
): Layer.Layer<I, ConfigError.ConfigError, Exclude<R | RG, Scope.Scope>> =>
  Layer.scoped(
    tag,
    Effect.flatMap(Config.unwrap(options.config), (settings) => {
      const { config: _config, ...given } = options
      return make({ ...given, ...fromSettings(settings) } as Options<A, E, R, EG, RG>)
    })
  )

/** @internal */
export const isPool = (u: unknown): u is Pool<unknown, unknown> => typeof u === "object" && u !== null && TypeId in u
