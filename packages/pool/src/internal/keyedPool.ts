import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { pipeArguments } from "effect/Pipeable"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { KeyedPool, TypeId as KeyedPoolTypeId, Options } from "../KeyedPool.js"
import type { PoolError } from "../PoolError.js"
import { PoolRegistry } from "../PoolRegistry.js"
import type { CleanupReport, ItemDetails, PoolStats } from "../PoolStats.js"
import { Item, type Lease, SharedLease, Waiter } from "./kernel/model.js"
import { type Labels, resolve } from "./settings.js"
import { type AnyFiber, annotations, type Creator, poolRuntime, type Restore } from "./shell/engine.js"
import { PoolState } from "./shell/poolState.js"

/** @internal */
export const TypeId: KeyedPoolTypeId = Symbol.for("@cistern/pool/KeyedPool") as KeyedPoolTypeId

/**
 * The public object: a thin shell over `PoolState`.
 */
class KeyedPoolImpl<K, A, E> implements KeyedPool<K, A, E> {
  readonly [TypeId] = {
    _K: (_: K) => _,
    _A: (_: A) => _,
    _E: (_: never): E => _
  }

  constructor(readonly state: PoolState<K, A, E>) {}

  /** Leases an item to the current fiber: the fast path is one synchronous step. */
  private take(key: K, restore: Restore, firstTry?: number): Effect.Effect<Lease<K, A>, E | PoolError> {
    return Effect.withFiberRuntime((fiber) => {
      const taken = this.takeNow(key, fiber as AnyFiber, restore, firstTry)
      return isLease(taken) ? Effect.succeed(taken) : taken
    })
  }

  /**
   * One admission step for `fiber`: the item itself when it could be leased
   * at once (the hot path allocates no effect for it), or the effect that
   * waits, creates or validates.
   */
  private takeNow(
    key: K,
    fiber: AnyFiber,
    restore: Restore,
    firstTry?: number
  ): Lease<K, A> | Effect.Effect<Lease<K, A>, E | PoolError> {
    const state = this.state
    const since = firstTry ?? state.now()
    const admitted = state.admit(key, fiber, since)
    let next: Effect.Effect<Lease<K, A>, E | PoolError>
    if (admitted instanceof SharedLease) {
      // Shared: only a lease of an item just taken from idle is validated (see `PoolState.admitShared`).
      if (!admitted.validating) {
        const closing = state.flush()
        return closing === Effect.void ? admitted : Effect.as(closing, admitted)
      }
      next = this.validated(admitted, key, since, restore)
    } else if (admitted instanceof Item) {
      if (state.settings.validate === undefined) {
        const closing = state.flush()
        return closing === Effect.void ? admitted : Effect.as(closing, admitted)
      }
      next = this.validated(admitted, key, since, restore)
    } else if (admitted instanceof Waiter) {
      // A caller granted a creation waits for it like any waiter: `acquireTimeout` bounds its whole wait.
      const waiter = admitted
      // Read before waiting: its own fiber starts the creation it was granted (see `PoolState.settle`).
      const queued = !waiter.reserved
      next = state.wait(waiter, restore)
      // A span for a wait in the queue; a creation of its own has its span (`KeyedPool.acquire`).
      if (state.settings.spans && queued) {
        next = Effect.withSpan(next, "KeyedPool.get", {
          attributes: { "cistern.pool": state.settings.name, "cistern.key": waiter.slot.description }
        })
      }
    } else {
      next = Effect.fail(admitted)
    }
    const closing = state.flush()
    return closing === Effect.void ? next : Effect.zipRight(closing, next)
  }

  /**
   * Validates an item taken from idle when one is due (see the shell's
   * `validate`); a failing one is destroyed and the caller tries again,
   * keeping its first deadline.
   */
  private validated(
    lease: Lease<K, A>,
    key: K,
    since: number,
    restore: Restore
  ): Effect.Effect<Lease<K, A>, E | PoolError> {
    const check = this.state.validate(lease, restore)
    if (check === undefined) return Effect.succeed(lease)
    return Effect.flatMap(check, (passed) => (passed ? Effect.succeed(lease) : this.take(key, restore, since)))
  }

  private useOnce<B, E2, R2>(key: K, f: (a: A) => Effect.Effect<B, E2, R2>): Effect.Effect<B, E | E2 | PoolError, R2> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.withFiberRuntime((fiber) => {
        const taken = this.takeNow(key, fiber as AnyFiber, restore)
        return isLease(taken)
          ? this.lend(taken, f, restore)
          : Effect.flatMap(taken, (item) => this.lend(item, f, restore))
      })
    )
  }

  /**
   * Runs `f` on a leased item (interruptibly) and ends the lease with its
   * outcome. An `f` that throws instead of returning an Effect fails the
   * caller with that defect, and the lease still ends.
   */
  private lend<B, E2, R2>(
    item: Lease<K, A>,
    f: (a: A) => Effect.Effect<B, E2, R2>,
    restore: Restore
  ): Effect.Effect<B, E2, R2> {
    let body: Effect.Effect<B, E2, R2>
    try {
      body = f(item.value)
    } catch (defect) {
      body = Effect.die(defect)
    }
    return Effect.matchCauseEffect(restore(body), {
      onFailure: (cause) => Effect.zipRight(this.state.release(item, Exit.failCause(cause)), Effect.failCause(cause)),
      onSuccess: (b) => {
        const closing = this.state.release(item, Exit.void)
        return closing === Effect.void ? Effect.succeed(b) : Effect.as(closing, b)
      }
    })
  }

  get(key: K): Effect.Effect<A, E | PoolError, Scope.Scope> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Scope.Scope, (scope) =>
        Effect.flatMap(this.take(key, restore), (item) =>
          Effect.as(
            Scope.addFinalizerExit(scope, (exit) => Effect.suspend(() => this.state.release(item, exit))),
            item.value
          )
        )
      )
    )
  }

  use<B, E2, R2>(key: K, f: (a: A) => Effect.Effect<B, E2, R2>): Effect.Effect<B, E | E2 | PoolError, R2> {
    const { retry, isConnectionError } = this.state.settings
    const once = this.useOnce(key, f)
    return retry === undefined ? once : Effect.retry(once, { schedule: retry, while: isConnectionError })
  }

  stream<B, E2, R2>(key: K, f: (a: A) => Stream.Stream<B, E2, R2>): Stream.Stream<B, E | E2 | PoolError, R2> {
    return Stream.unwrapScoped(Effect.map(this.get(key), f))
  }

  prewarm(key: K, count?: number): Effect.Effect<void, E | PoolError> {
    return Effect.suspend(() => {
      const n = count ?? this.state.settings.minIdlePerKey
      return n > 0 ? this.state.prewarm(key, n) : Effect.void
    })
  }

  invalidate(value: A): Effect.Effect<void> {
    return Effect.withFiberRuntime((fiber) => {
      const item = holding(this.state, value, fiber)
      if (item === undefined) return Effect.void
      if (item.state === "leased") return this.state.invalidateLeased(item)
      this.state.destroy(item, "invalidated")
      return this.state.flush()
    })
  }

  evictIdle(count: number): Effect.Effect<number> {
    return Effect.suspend(() => {
      const evicted = this.state.evictIdle(count)
      return Effect.as(this.state.flush(), evicted)
    })
  }

  get retireAll(): Effect.Effect<number> {
    return Effect.suspend(() => {
      const retired = this.state.retireAll()
      return Effect.as(this.state.flush(), retired)
    })
  }

  get stats(): Effect.Effect<PoolStats> {
    return Effect.sync(() => this.state.stats())
  }

  get items(): Effect.Effect<ReadonlyArray<ItemDetails>> {
    return Effect.sync(() => this.state.itemDetails())
  }

  get cleanup(): Effect.Effect<CleanupReport> {
    return this.state.cleanup()
  }

  pipe() {
    // biome-ignore lint/complexity/noArguments: pipeArguments reads the arguments object, as Effect's own data types do
    return pipeArguments(this, arguments)
  }
}

/**
 * Of the items holding one value (usually one; several when values compare
 * equal), the one `invalidate` means: the caller's own lease, else an idle
 * one, else any.
 */
const holding = <K, A>(state: PoolState<K, A, unknown>, value: A, fiber: unknown): Item<K, A> | undefined => {
  const items = state.items.holding(value)
  if (items.length <= 1) return items[0]
  const own = (item: Item<K, A>): boolean => {
    if (!state.shares) return item.holder === fiber
    for (const lease of state.live) if (lease.item === item && lease.holder === fiber) return true
    return false
  }
  return items.find(own) ?? items.find((i) => i.state === "idle") ?? items[0]
}

/** Whether an admission step ended with a lease (the hot path), not with an effect to run. */
const isLease = <K, A>(u: unknown): u is Lease<K, A> => u instanceof Item || u instanceof SharedLease

/**
 * Runs a background loop on `schedule` (its first round after the first
 * delay) until the pool's scope closes; a failing round is logged, never fatal.
 */
const background = (
  round: Effect.Effect<unknown>,
  schedule: Schedule.Schedule<unknown, unknown>,
  scope: Scope.Scope,
  what: string
): Effect.Effect<unknown> =>
  round.pipe(
    Effect.catchAllCause((cause) => Effect.logWarning(`${what} failed`, cause)),
    Effect.schedule(schedule),
    Effect.annotateLogs(annotations),
    Effect.forkIn(scope)
  )

/** @internal */
export const make = <K, A, E, R, EG = never, RG = never>(
  options: Options<K, A, E, R, EG, RG>,
  labels?: Labels
): Effect.Effect<KeyedPool<K, A, E | EG>, never, Scope.Scope | Exclude<R | RG, Scope.Scope>> =>
  Effect.gen(function* () {
    const settings = resolve(options, labels)
    // The pool's own scope is in this context; each item gets a scope of its own instead.
    const context = Context.omit(Scope.Scope)(yield* Effect.context<Exclude<R | RG, Scope.Scope>>())
    const clock = yield* Effect.clock
    const drained = yield* Deferred.make<void>()
    const scope = yield* Effect.scope
    const runtime = yield* poolRuntime
    const userGate = options.gate
    // The user's functions run where the context is the pool's plus the item's own scope (see `Creator`).
    // Lazily: an `acquire` that throws (a bad URL) fails its creation with the defect, which frees the reservation.
    const creator: Creator<K, A, E | EG> = {
      context: (itemScope) => Context.add(context, Scope.Scope, itemScope) as Context.Context<never>,
      acquire: (key) => Effect.suspend(() => options.acquire(key)) as Effect.Effect<A, E>,
      gate:
        userGate === undefined
          ? undefined
          : (gateContext) => Effect.suspend(() => userGate(gateContext)) as Effect.Effect<unknown, EG>
    }
    const state = new PoolState<K, A, E | EG>(settings, creator, clock, drained, scope, runtime)

    if (Number.isFinite(settings.acquireTimeout)) {
      yield* Effect.forkIn(Effect.annotateLogs(state.deadlines, annotations), scope)
    }
    const expires = Number.isFinite(settings.idleTimeout) || Number.isFinite(settings.maxLifetime)
    if (Number.isFinite(settings.cleanupInterval) && (expires || settings.breaker !== undefined)) {
      const interval = Duration.millis(settings.cleanupInterval)
      yield* background(state.cleanup(), Schedule.spaced(interval), scope, "idle cleanup")
    }
    if (settings.healthCheck !== undefined) {
      const task = settings.healthCheck
      yield* background(state.maintain("check", task), task.schedule, scope, "health check")
    }
    if (Number.isFinite(settings.metricsInterval)) {
      const sampling = Effect.sync(() => state.sampleGauges())
      yield* background(sampling, Schedule.spaced(Duration.millis(settings.metricsInterval)), scope, "metrics")
    }
    if (settings.heartbeat !== undefined) {
      const task = settings.heartbeat
      yield* background(state.maintain("heartbeat", task), task.schedule, scope, "heartbeat")
    }
    const pool = new KeyedPoolImpl(state)
    // Registered before the shutdown finalizer, so it stays listed (closed) until it has drained.
    const registry = yield* Effect.serviceOption(PoolRegistry)
    if (options.name !== undefined && Option.isSome(registry)) {
      yield* registry.value.register({
        name: settings.name,
        stats: pool.stats,
        items: pool.items,
        cleanup: pool.cleanup
      })
    }
    yield* Scope.addFinalizer(
      scope,
      Effect.withFiberRuntime<void>((fiber) => state.shutdown(fiber as AnyFiber)).pipe(
        Effect.zipRight(Effect.sync(() => state.sampleGauges())),
        Effect.zipRight(
          Effect.suspend(() => Effect.logDebug(`pool closed: created ${state.created}, destroyed ${state.destroyed}`))
        ),
        Effect.annotateLogs({ ...annotations, pool: settings.name })
      )
    )
    return pool
  })

/** @internal */
export const isKeyedPool = (u: unknown): u is KeyedPool<unknown, unknown, unknown> =>
  typeof u === "object" && u !== null && TypeId in u
