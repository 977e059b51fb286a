/**
 * The keyed pool's shell, first layer: the kernel's ports (time, wakes,
 * metrics, errors), what ends every step — performing its decisions
 * (`flush`: log lines, items to close, refills) — and the release paths that
 * feed a lease's outcome back to the kernel. The layers above add creation
 * (`creator.ts`), background work (`maintenance.ts`), shutdown and stats
 * (`poolState.ts`): each a class over the one below, like the kernel's
 * layers, so imports point one way. `keyedPool.ts` wraps the top one in the
 * public object.
 *
 * @internal
 */
import type * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import type * as Metric from "effect/Metric"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type { GateContext } from "../../KeyedPool.js"
import { CircuitOpen, KeyLimitExceeded, PoolClosed, PoolTimeout } from "../../PoolError.js"
import * as PoolMetrics from "../../PoolMetrics.js"
import type { Outcome } from "../kernel/breaker.js"
import type { Log } from "../kernel/decisions.js"
import { Kernel, type KernelIO, type Metric as KernelMetric } from "../kernel/kernel.js"
import { type Item, type KeySlot, type Lease, SharedLease, type Waiter } from "../kernel/model.js"
import { KeyIndex } from "../keyIndex.js"
import { PoolTags } from "../metrics.js"
import type { Resolved } from "../settings.js"

/** @internal */
export type AnyFiber = Fiber.RuntimeFiber<unknown, unknown>

/**
 * The user's functions for making an item. They run where the context is
 * `context(scope)`: the pool's, plus the item's own `Scope`.
 */
export interface Creator<K, A, E> {
  readonly context: (scope: Scope.Scope) => Context.Context<never>
  readonly acquire: (key: K) => Effect.Effect<A, E>
  readonly gate: ((context: GateContext<K>) => Effect.Effect<unknown, E>) | undefined
}

/** @internal */
export const annotations = { package: "@cistern/pool", module: "KeyedPool" } as const

/** The kernel's metric names, as the pool's metrics. */
const metrics: Record<KernelMetric, Metric.Metric<any, number, any>> = {
  created: PoolMetrics.created,
  destroyed: PoolMetrics.destroyed,
  leaseDuration: PoolMetrics.leaseDuration,
  acquireWait: PoolMetrics.acquireWait,
  createDuration: PoolMetrics.createDuration,
  acquireTimeouts: PoolMetrics.acquireTimeouts,
  acquireFailures: PoolMetrics.acquireFailures,
  breakerTransitions: PoolMetrics.breakerTransitions
}

/** Resumes a parked caller (its `Effect.async` callback is the waiter's `wake`), once. */
const wake = (waiter: Waiter<any, any>): void => {
  const resume = waiter.wake as ((effect: Effect.Effect<void>) => void) | undefined
  if (resume !== undefined) {
    waiter.wake = undefined
    resume(Effect.void)
  }
}

/** The effects the kernel's ports stand for; `onWaiting` is set once the pool exists. */
const makeIO = (
  clock: Clock.Clock,
  drained: Deferred.Deferred<void>,
  tags: PoolTags,
  onWaiting: () => void
): KernelIO => ({
  now: () => clock.unsafeCurrentTimeMillis(),
  wake,
  waiting: onWaiting,
  drained: () => {
    Deferred.unsafeDone(drained, Exit.void)
  },
  update: (keyTags, metric, n, label, value) =>
    keyTags.update(metrics[metric], n, label === undefined ? keyTags.labels : keyTags.with(label, value!)),
  tagsFor: (description) => tags.forKey(description),
  errors: {
    closed: (key) => new PoolClosed({ key }),
    circuitOpen: (key, retryAfterMillis, consecutiveFailures) =>
      new CircuitOpen({ key, retryAfterMillis, consecutiveFailures }),
    keyLimit: (key, maxKeys, poolSnapshot) => new KeyLimitExceeded({ key, maxKeys, poolSnapshot }),
    timeout: (data) => new PoolTimeout(data)
  }
})

/**
 * The shell's base: the kernel's state and rules, and the effects that carry
 * out its decisions. Bookkeeping runs inside a single `Effect.sync`/`suspend`
 * step, so each state change is atomic with respect to other fibers without
 * locks; only resource creation and destruction (the user's effects) run
 * asynchronously.
 *
 * @internal
 */
export abstract class Engine<K, A, E> extends Kernel<K, A> {
  /** Fibers running a creation, interrupted if shutdown outlasts `drainTimeout`. */
  readonly creators = new Set<AnyFiber>()
  readonly tags: PoolTags
  /** Metric labels of tenant groups, capped like keys' (`metricsPerKey`). */
  protected readonly groupTags: PoolTags | undefined
  /** Wakes the deadline fiber when the first waiter arrives. */
  protected wakeDeadlines: ((effect: Effect.Effect<void>) => void) | undefined

  constructor(
    settings: Resolved<K>,
    readonly creator: Creator<K, A, E>,
    readonly clock: Clock.Clock,
    readonly drained: Deferred.Deferred<void>,
    /** The pool's scope: background refills run in it. */
    readonly scope: Scope.Scope,
    /** Runs items' finalizers and callers' creations on fibers of their own (see `closeAll`, `spawn`). */
    readonly runtime: Runtime.Runtime<never>
  ) {
    const tags = new PoolTags(settings.name, settings.metricsPerKey)
    const box: { self?: Engine<K, A, E> } = {}
    super(
      settings,
      new KeyIndex<unknown, KeySlot<K, A>>(),
      makeIO(clock, drained, tags, () => box.self!.deadlineWanted())
    )
    box.self = this
    this.tags = tags
    this.groupTags =
      settings.group === undefined || settings.metricsPerKey === 0
        ? undefined
        : new PoolTags(settings.name, settings.metricsPerKey, "group")
  }

  /** The first waiter arrived: the deadline fiber, if parked, wakes. */
  private deadlineWanted(): void {
    const resume = this.wakeDeadlines
    if (resume !== undefined) {
      this.wakeDeadlines = undefined
      resume(Effect.void)
    }
  }

  /**
   * A shared lease's item passed validation: it takes other leases now, and
   * serves the key's waiters while it has room.
   */
  open(lease: SharedLease<K, A>): Effect.Effect<void> {
    this.openShared(lease)
    return this.flush()
  }

  /**
   * Marks a leased item broken: it is destroyed when its lease (or its last
   * shared lease) ends, and with shared leases it takes no new one from now.
   */
  invalidateLeased(item: Item<K, A>): Effect.Effect<void> {
    this.markInvalid(item)
    return this.flush()
  }

  // ---------------------------------------------------------------------------
  // release and destruction
  // ---------------------------------------------------------------------------

  /**
   * Ends a caller's lease: the item goes back, or is destroyed when unfit or
   * when the lease failed with a connection error. The outcome feeds the
   * breaker.
   */
  release(lease: Lease<K, A>, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    if (lease instanceof SharedLease ? lease.done : lease.state !== "leased") return Effect.void
    this.endLease(lease, Exit.isSuccess(exit) ? "success" : this.classify(exit.cause))
    return this.flush()
  }

  /**
   * Puts back an item whose lease gives the breaker no verdict: one the pool
   * held itself (a check, a pre-warm), or a caller's that was interrupted
   * before using it. A probe's place is given up, so the next caller probes.
   */
  giveBack(lease: Lease<K, A>): Effect.Effect<void> {
    this.endLease(lease, undefined)
    return this.flush()
  }

  /**
   * Destroys an item the pool found broken (a failed check or validation).
   * Its key remembers the failure (see `remembersFailures`), so the key's
   * health history survives and a refill or the caller's next try finds it.
   * The check reports to the breaker itself; a failed validation is no
   * verdict on the upstream (the caller goes on to a fresh item, whose
   * outcome counts).
   */
  releaseBroken(lease: Lease<K, A>): Effect.Effect<void> {
    this.markBroken(lease)
    return this.giveBack(lease)
  }

  /** Whether a failure is the connection's fault, the caller's, or an interruption. */
  classify(cause: Cause.Cause<unknown>): Outcome {
    if (Cause.isInterruptedOnly(cause)) return "interrupted"
    const failure = Cause.failureOption(cause)
    const error = failure._tag === "Some" ? failure.value : Cause.squash(cause)
    return this.settings.isConnectionError(error) ? "connection" : "caller"
  }

  /**
   * Finishes a step: performs what it decided, in this order whatever order
   * it decided it in: writes its log lines, starts closing the items it
   * destroyed and starts the refills it asked for.
   */
  flush(): Effect.Effect<void> {
    const decisions = this.takeDecisions()
    if (decisions === undefined) return Effect.void
    const logs: Array<Effect.Effect<void>> = []
    const doomed: Array<Item<K, A>> = []
    const short: Array<KeySlot<K, A>> = []
    for (const decision of decisions) {
      switch (decision._tag) {
        case "Log":
          logs.push(logLine(decision))
          break
        case "Destroy":
          doomed.push(decision.item)
          break
        case "Refill":
          short.push(decision.slot)
          break
      }
    }
    let step: Effect.Effect<void> = Effect.void
    if (logs.length > 0) step = Effect.annotateLogs(Effect.all(logs, { discard: true }), annotations)
    if (doomed.length > 0)
      step = Effect.zipRight(
        step,
        Effect.sync(() => this.closeAll(doomed))
      )
    if (short.length > 0) step = Effect.zipRight(step, Effect.forEach(short, this.refill, { discard: true }))
    return step
  }

  /**
   * Closes items' scopes, each on a fiber of its own, started at once: a
   * finalizer that finishes without waiting has finished when this returns,
   * and one that hangs holds up no caller (a caller must not run another key's
   * finalizer inside its own uninterruptible step), nor shutdown beyond
   * `drainTimeout`. Each runs exactly once: an item is doomed once.
   */
  private closeAll(doomed: ReadonlyArray<Item<K, A>>): void {
    const run = Runtime.runFork(this.runtime)
    for (const item of doomed) {
      this.closing++
      run(Effect.ensuring(closeItem(item), this.closedOne))
    }
  }

  private readonly closedOne = Effect.sync(() => this.finalized())

  /** Brings a key back to `minIdlePerKey` in the background (see `maintenance.ts`). */
  abstract readonly refill: (slot: KeySlot<K, A>) => Effect.Effect<void>
}

/**
 * The runtime the pool starts its fibers on (creations, finalizers): the
 * making fiber's, with each fiber ref's current value only, and without the
 * two refs every fiber sets for itself (its context and runtime flags, which
 * the runtime gives it). A fiber keeps, per fiber ref, a stack of the values
 * its ancestors set; a new fiber copies each stack it changes (a creation
 * changes those two), with room to grow, and an `acquireRelease` item keeps
 * its creating fiber's refs until its release. Starting those two stacks
 * empty saves ~300 B an item; the pool's fibers are joined by nobody, so the
 * history serves nothing.
 *
 * @internal
 */
export const poolRuntime: Effect.Effect<Runtime.Runtime<never>> = Effect.withFiberRuntime((fiber) =>
  Effect.map(Effect.runtime<never>(), (runtime) => {
    const id = fiber.id()
    const current = new Map<FiberRef.FiberRef<any>, Arr.NonEmptyReadonlyArray<readonly [FiberId.Single, any]>>()
    for (const ref of FiberRefs.fiberRefs(runtime.fiberRefs)) {
      if (ref === FiberRef.currentContext || ref === FiberRef.currentRuntimeFlags) continue
      current.set(ref, [[id, FiberRefs.getOrDefault(runtime.fiberRefs, ref)]])
    }
    return Runtime.make({
      context: runtime.context,
      fiberRefs: FiberRefs.unsafeMake(current),
      runtimeFlags: runtime.runtimeFlags
    })
  })
)

/** @internal */
export type Restore = <X, EX, RX>(effect: Effect.Effect<X, EX, RX>) => Effect.Effect<X, EX, RX>

/** Writes a log line a step asked for, with its cause if it has one. */
const logLine = (log: Log): Effect.Effect<void> => {
  const message: ReadonlyArray<unknown> = log.cause === undefined ? [log.message] : [log.message, log.cause]
  switch (log.level) {
    case "Debug":
      return Effect.logDebug(...message)
    case "Info":
      return Effect.logInfo(...message)
    case "Warning":
      return Effect.logWarning(...message)
  }
}

/** Closes a scope, logging (not failing with) a finalizer's failure. */
export const closeScope = (scope: Scope.CloseableScope, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Effect.catchAllCause(Scope.close(scope, exit), (cause) =>
    Effect.annotateLogs(Effect.logWarning("an item's finalizer failed", cause), annotations)
  )

/** Closes an item's scope (its handle, see `create`). */
const closeItem = (item: Item<any, any>): Effect.Effect<void> =>
  closeScope(item.handle as Scope.CloseableScope, Exit.void)
