import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { GateContext } from "../KeyedPool.js"
import {
  CheckTimeout,
  CircuitOpen,
  CreateTimeout,
  KeyLimitExceeded,
  PoolClosed,
  type PoolError,
  PoolTimeout
} from "../PoolError.js"
import * as PoolMetrics from "../PoolMetrics.js"
import type { CheckResult, CleanupReport, KeyStats, PoolStats } from "../PoolStats.js"
import type { Outcome } from "./kernel/breaker.js"
import type { CheckFailure } from "./kernel/checks.js"
import type { Log } from "./kernel/decisions.js"
import { Kernel, type KernelIO, type Metric as KernelMetric } from "./kernel/kernel.js"
import { type Item, KeySlot, type Lease, SharedLease, type Waiter } from "./kernel/model.js"
import * as snapshot from "./kernel/snapshot.js"
import { KeyIndex } from "./keyIndex.js"
import { PoolTags, sample, sampleGroup } from "./metrics.js"
import { configInForce, type Maintenance, type Resolved } from "./settings.js"

/**
 * The keyed pool's shell: runs what the kernel (`kernel/kernel.ts`) decides
 * with fibers, `Deferred`, `Scope`, `Schedule`, metrics and logs, and feeds
 * the outcomes of the user's effects (creations, finalizers, checks) back to
 * it. `keyedPool.ts` wraps it in the public object.
 *
 * @internal
 */

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
 * The engine: the kernel's state and rules, and the effects that carry out
 * its decisions. Bookkeeping runs inside a single `Effect.sync`/`suspend`
 * step, so each state change is atomic with respect to other fibers without
 * locks; only resource creation and destruction (the user's effects) run
 * asynchronously.
 *
 * @internal
 */
export class PoolState<K, A, E> extends Kernel<K, A> {
  /** Fibers running a creation, interrupted if shutdown outlasts `drainTimeout`. */
  readonly creators = new Set<AnyFiber>()
  readonly tags: PoolTags
  /** Metric labels of tenant groups, capped like keys' (`metricsPerKey`). */
  private readonly groupTags: PoolTags | undefined
  /** Wakes the deadline fiber when the first waiter arrives. */
  private wakeDeadlines: ((effect: Effect.Effect<void>) => void) | undefined

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
    const box: { self?: PoolState<K, A, E> } = {}
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

  // ---------------------------------------------------------------------------
  // waiting and creating (the caller's own fiber runs both)
  // ---------------------------------------------------------------------------

  /** Parks until served; returns at once if it already was. */
  park(waiter: Waiter<K, A>): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (waiter.state === "waiting" && !waiter.reserved) waiter.wake = resume
      else resume(Effect.void)
    })
  }

  /** Waits (interruptibly) until the waiter is served, fails, or must start its creation. */
  wait(waiter: Waiter<K, A>, restore: Restore): Effect.Effect<Lease<K, A>, E | PoolError> {
    return Effect.flatMap(Effect.exit(restore(this.park(waiter))), (exit) => this.resume(waiter, exit, restore))
  }

  /**
   * After parking ended (served, timed out, closed or interrupted), performs
   * what the kernel settled (`Kernel.settle`): starts the granted creation and
   * waits again, hands the lease over (or gives it back when the caller was
   * interrupted), or fails.
   */
  private resume(
    waiter: Waiter<K, A>,
    exit: Exit.Exit<void>,
    restore: Restore
  ): Effect.Effect<Lease<K, A>, E | PoolError> {
    const settled = this.settle(waiter, Exit.isFailure(exit))
    let next: Effect.Effect<Lease<K, A>, E | PoolError>
    switch (settled._tag) {
      case "start":
        // Still waiting: start the creation on a fiber of its own and keep waiting, deadline and all.
        return Effect.zipRight(this.spawn(waiter), this.wait(waiter, restore))
      case "lease":
        next = Exit.isSuccess(exit)
          ? Effect.succeed(settled.lease)
          : Effect.zipRight(this.release(settled.lease, exit), Effect.failCause(exit.cause))
        break
      case "failed":
        next =
          settled.cause !== undefined
            ? (Effect.failCause(settled.cause as Cause.Cause<unknown>) as Effect.Effect<never, E>)
            : Effect.fail(settled.error!)
        break
      case "gone":
        next = Exit.isFailure(exit) ? Effect.failCause(exit.cause) : Effect.dieMessage("a waiter woke unserved")
        break
    }
    const closing = this.flush()
    return closing === Effect.void ? next : Effect.zipRight(closing, next)
  }

  /**
   * Starts the creation granted to a waiter, on a fiber of its own (the
   * pool's, with the caller's span as parent): the caller stops
   * waiting at its deadline while the creation goes on, bounded by
   * `createTimeout` (as HikariCP does), with no timer of its own. Its item
   * goes to the key's first waiter (usually the caller) or to idle; its
   * failure fails the caller if it still waits. The creation takes over the
   * caller's probe of a half-open circuit: its outcome is the probe's verdict.
   */
  private spawn(waiter: Waiter<K, A>): Effect.Effect<void> {
    const probe = waiter.probe
    waiter.probe = false
    return Effect.flatMap(Scope.make(), (itemScope) =>
      Effect.withFiberRuntime<void>((caller) => {
        // The item may serve another caller, so the creation is the pool's work: on the pool's
        // fiber refs, already in the item's context (no `provide`), with the caller's span as
        // parent. An `acquireRelease` in `acquire` keeps the creating fiber's fiber refs until its
        // release: from the pool's, an item keeps ~400 B less than from a caller's.
        let context = this.creator.context(itemScope)
        const parent = Context.getOption(caller.currentContext, Tracer.ParentSpan)
        if (Option.isSome(parent)) context = Context.add(context, Tracer.ParentSpan, parent.value)
        const runtime = Runtime.make({
          context,
          fiberRefs: this.runtime.fiberRefs,
          runtimeFlags: this.runtime.runtimeFlags
        })
        // Started at once: the connect begins before anything scheduled after it.
        Runtime.runFork(runtime)(Effect.uninterruptible(this.creation(waiter, probe, itemScope)), { immediate: true })
        return Effect.void
      })
    )
  }

  /** The fiber of a caller's creation (see `spawn`): the creation and what follows it. */
  private creation(waiter: Waiter<K, A>, probe: boolean, itemScope: Scope.CloseableScope): Effect.Effect<void> {
    const slot = waiter.slot
    return Effect.withFiberRuntime<void>((fiber) =>
      Effect.matchCauseEffect(
        this.create(slot, waiter.key, fiber as AnyFiber, probe, -1, Effect.interruptible, waiter, itemScope),
        {
          onSuccess: (item) => this.deliver(item, waiter),
          onFailure: () =>
            Effect.suspend(() => {
              this.creationLost(waiter)
              return this.flush()
            })
        }
      )
    )
  }

  /** A waiter's creation made an item: the kernel hands it on (see `Kernel.delivered`). */
  private deliver(item: Item<K, A>, waiter: Waiter<K, A>): Effect.Effect<void> {
    this.delivered(item, waiter)
    return this.flush()
  }

  /**
   * Runs `acquire` for a reservation, in a fresh scope that becomes the item's:
   * after the key's creation backoff, bounded by `createTimeout`. Whatever
   * happens, the reservation ends exactly once: as a leased item, or freed.
   * (A caller's creation runs on a fiber of its own, see `spawn`: its caller
   * waits with its `acquireTimeout` while it runs.) `itemScope` is given when
   * the fiber already runs in the item's context (`spawn`); otherwise the
   * scope is made here and provided.
   */
  create(
    slot: KeySlot<K, A>,
    key: K,
    fiber: AnyFiber,
    probe: boolean,
    since: number,
    restore: Restore,
    owner?: Waiter<K, A>,
    itemScope?: Scope.CloseableScope
  ): Effect.Effect<Item<K, A>, E | PoolError> {
    return Effect.flatMap(itemScope === undefined ? Scope.make() : Effect.succeed(itemScope), (scope) => {
      const started = this.now()
      const { createTimeout } = this.settings
      const { gate } = this.creator
      let attempt: Effect.Effect<A, E | CreateTimeout> = this.creator.acquire(key)
      if (Number.isFinite(createTimeout)) {
        attempt = Effect.timeoutFail(attempt, {
          duration: Duration.millis(createTimeout),
          onTimeout: () => new CreateTimeout({ key: slot.description, timeoutMillis: createTimeout })
        })
      }
      // Only a creation that passed the gate has a verdict on the resource (see the failure below).
      let permitted = gate === undefined
      if (gate !== undefined) {
        const acquiring = attempt
        attempt = Effect.zipRight(
          gate(this.gateContext(slot, key)),
          Effect.suspend(() => {
            permitted = true
            return acquiring
          })
        )
      }
      if (itemScope === undefined) attempt = Effect.provide(attempt, this.creator.context(scope))
      const backoff = slot.backoffUntil - started
      if (backoff > 0) attempt = Effect.zipRight(Effect.sleep(Duration.millis(backoff)), attempt)
      if (this.settings.spans) {
        attempt = Effect.withSpan(attempt, "KeyedPool.acquire", {
          attributes: { "cistern.pool": this.settings.name, "cistern.key": slot.description }
        })
      }
      this.creators.add(fiber)
      return Effect.flatMap(Effect.exit(restore(attempt)), (attempted) => {
        this.creators.delete(fiber)
        // The item's credential version, read before anything is counted: a `fingerprint` that
        // throws fails this creation with the defect (its reservation freed, its resource closed).
        let fingerprint: string | undefined
        let exit: Exit.Exit<A, E | CreateTimeout> = attempted
        if (Exit.isSuccess(attempted) && this.settings.fingerprint !== undefined) {
          try {
            fingerprint = this.settings.fingerprint(key)
          } catch (defect) {
            exit = Exit.die(defect)
          }
        }
        if (Exit.isSuccess(exit)) {
          return Effect.succeed(
            this.createSucceeded(slot, exit.value, scope, fingerprint, fiber, probe, started, since)
          )
        }
        const how = Cause.isInterruptedOnly(exit.cause) ? "interrupted" : permitted ? "failed" : "refused"
        this.createFailed(slot, owner, probe, how, exit.cause)
        return this.flush().pipe(
          Effect.zipRight(closeScope(scope, exit)),
          Effect.zipRight(Effect.failCause(exit.cause))
        )
      })
    })
  }

  /** What a gate is given for a creation of `slot`: its group, and a way to make room in its limit. */
  private gateContext(slot: KeySlot<K, A>, key: K): GateContext<K> {
    return {
      key,
      group: slot.group?.id,
      evictIdle: Effect.suspend(() => {
        const evicted = this.evictIdleFor(slot)
        return evicted ? Effect.as(this.flush(), true) : Effect.succeed(false)
      })
    }
  }

  // ---------------------------------------------------------------------------
  // background work: deadlines, idle expiry, health checks, heartbeats, refills
  // ---------------------------------------------------------------------------

  /**
   * One fiber expires waiters past their deadline. Deadlines follow arrival
   * order (see `enqueue`), so it sleeps until the oldest waiter's deadline,
   * and parks when nobody waits.
   */
  readonly deadlines: Effect.Effect<never> = Effect.forever(
    Effect.suspend((): Effect.Effect<void> => {
      const oldest = this.waiters.head?.value
      if (oldest === undefined) {
        return Effect.async<void>((resume) => {
          this.wakeDeadlines = resume
        })
      }
      const now = this.now()
      if (oldest.deadline > now) return Effect.sleep(Duration.millis(oldest.deadline - now))
      this.expire(now)
      return this.flush()
    })
  )

  /**
   * Destroys idle items past `idleTimeout` (keeping `minIdlePerKey`) or
   * `maxLifetime`, and drops keys kept only by a breaker that has gone quiet.
   * A full pass over idle items: health checks return items out of release
   * order, so the list is only roughly sorted.
   */
  cleanup(): Effect.Effect<CleanupReport> {
    return Effect.suspend(() => {
      const report = this.expireIdle(this.now())
      return this.flush().pipe(Effect.zipRight(this.refillAll()), Effect.as(report))
    })
  }

  /**
   * Runs a health check or heartbeat over the items idle right now, a few at
   * a time. Each is taken out of idle while it runs (so no caller shares it),
   * then handed to a waiter or put back; one that fails or outlives the
   * timeout is destroyed and its key refilled up to `minIdlePerKey`.
   */
  maintain(kind: "check" | "heartbeat", task: Maintenance): Effect.Effect<void> {
    return Effect.suspend(() =>
      Effect.forEach(this.checkBatch(), (item) => this.maintainOne(kind, task, item), {
        concurrency: maintenanceConcurrency,
        discard: true
      }).pipe(Effect.zipRight(this.refillAll()))
    )
  }

  /** Refills every key below `minIdlePerKey` (a no-op, and no scan, when it is 0). */
  refillAll(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.askRefills()
      return this.flush()
    })
  }

  private maintainOne(kind: "check" | "heartbeat", task: Maintenance, item: Item<K, A>): Effect.Effect<void> {
    // Uninterruptible but for the check itself: whatever ends the check, the item is put back or destroyed.
    return Effect.uninterruptibleMask((restore) => {
      const idleSince = item.idleSince
      if (!this.checkOut(item)) return Effect.void
      const started = this.now()
      const run = bounded(task.run(item.value), task.timeout, kind)
      return Effect.flatMap(Effect.exit(restore(run)), (exit) => {
        this.checked(item, kind, started, idleSince, Exit.isSuccess(exit) ? undefined : checkFailure(exit.cause))
        return this.flush()
      })
    })
  }

  /** Appends a result to the key's bounded history. */
  record(
    slot: KeySlot<K, A>,
    kind: CheckResult["kind"],
    started: number,
    now: number,
    exit: Exit.Exit<unknown, unknown>
  ): void {
    this.remember(slot, kind, started, now, Exit.isSuccess(exit) ? undefined : describeCause(exit.cause))
  }

  /**
   * Creates items for `slot` one after another while `reserveFill` allows,
   * putting each back (to a waiting caller, or idle). Reserved and created
   * under one mask: an interruption (the pool closing) frees the
   * reservation and closes what the creation had opened. A failed creation
   * fails the fill with the resource's error.
   */
  private fill(slot: KeySlot<K, A>, missing: (slot: KeySlot<K, A>) => number): Effect.Effect<boolean, E | PoolError> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.withFiberRuntime<boolean, E | PoolError>((fiber) => {
        if (!this.reserveFill(slot, missing)) return Effect.succeed(false)
        return Effect.flatMap(this.create(slot, slot.key, fiber as AnyFiber, false, this.now(), restore), (item) =>
          Effect.as(this.giveBack(item), true)
        )
      })
    )
  }
  /**
   * Brings a key back to `minIdlePerKey` in the background, one creation at a
   * time. A failed creation is logged and retried after the key's creation
   * backoff (with `createBackoff: false`, the next breach or cleanup round
   * retries). Runs in the pool's scope, interruptibly whoever started it (a
   * caller inside its own uninterruptible step must not pass its mask on to a
   * connect that may hang), so closing the pool stops it.
   */
  readonly refill = (slot: KeySlot<K, A>): Effect.Effect<void> => {
    const retry = this.settings.createBackoff !== undefined
    const one = Effect.catchAllCause(this.fill(slot, this.belowFloorBy), (cause) =>
      Effect.as(Effect.logWarning("refilling an idle item failed", cause), retry)
    )
    const fills = Effect.repeat(one, { while: (more) => more }).pipe(
      Effect.ensuring(
        Effect.suspend(() => {
          this.refilled(slot)
          return this.flush()
        })
      ),
      Effect.interruptible,
      Effect.annotateLogs(annotations)
    )
    slot.refilling = true
    return Effect.asVoid(Effect.forkIn(fills, this.scope))
  }

  /**
   * Makes sure `key` has `count` items (capped at its limit), creating only
   * the missing ones, `createConcurrency` at a time, and leaving them idle.
   * It holds no lease and never waits for one, so it cannot deadlock with
   * callers; it stops early when the total is full. Fails like `get` would
   * (closed pool, open circuit, too many keys, a failed creation).
   */
  prewarm(key: K, count: number): Effect.Effect<void, E | PoolError> {
    return Effect.suspend(() => {
      if (this.closed) return Effect.fail(new PoolClosed({ key: this.settings.describeKey(key) }))
      const now = this.now()
      const slot = this.slotFor(key, now)
      // Finding the key may have destroyed idle items (retired credentials, an evicted key):
      // they are closed whatever follows, even when nothing is created.
      const closing = this.flush()
      const next = slot instanceof KeySlot ? this.prewarmSlot(slot, now, count) : Effect.fail(slot)
      return closing === Effect.void ? next : Effect.zipRight(closing, next)
    })
  }

  /** `prewarm` once its key is found: fails fast on an open circuit, else creates the missing items. */
  private prewarmSlot(slot: KeySlot<K, A>, now: number, count: number): Effect.Effect<void, E | PoolError> {
    if (slot.breaker !== undefined && slot.breaker.state === "open") {
      const retryAfter = slot.breaker.retryAfter(now)
      if (retryAfter > 0) {
        // As a refused caller: a key kept only for its failures waits for cleanup again.
        this.dropIfEmpty(slot)
        return Effect.fail(this.circuitOpen(slot, retryAfter))
      }
    }
    const missing = (s: KeySlot<K, A>) => Math.min(count, s.max) - s.size
    const fills = Math.min(missing(slot), this.settings.createConcurrency)
    if (fills <= 0) return Effect.void
    const worker = Effect.repeat(this.fill(slot, missing), { while: (more) => more })
    return Effect.all(
      Array.from({ length: fills }, () => worker),
      { concurrency: "unbounded", discard: true }
    ).pipe(
      // A key that got nothing (the total was full) is not kept empty.
      Effect.ensuring(
        Effect.suspend(() => {
          this.dropIfEmpty(slot)
          return this.flush()
        })
      )
    )
  }

  // ---------------------------------------------------------------------------
  // shutdown
  // ---------------------------------------------------------------------------

  /**
   * Closes the pool: refuses new callers, releases waiters with `PoolClosed`,
   * destroys idle items, gives leases `drainTimeout` to come back, then
   * interrupts their holders and destroys what is left. Every item's scope is
   * closed exactly once.
   */
  shutdown(self: AnyFiber): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.close()
      // Leases, creations and finalizers (started here or later) all count;
      // the wait must stay interruptible for the timeout to end it.
      const drain = Effect.timeoutTo(Effect.interruptible(Deferred.await(this.drained)), {
        duration: Duration.millis(this.settings.drainTimeout),
        onSuccess: () => true,
        onTimeout: () => false
      })
      return this.flush().pipe(
        Effect.zipRight(Effect.sync(() => this.checkDrained())),
        Effect.zipRight(drain),
        Effect.flatMap((drained) => (drained ? Effect.void : this.forceCloseAfterDrain(self)))
      )
    })
  }

  /**
   * At `drainTimeout`: interrupts the fibers still holding or creating
   * items, destroys the items still leased (their finalizers start now), and
   * returns. A finalizer still running then (one that hangs) is left to
   * finish on its own fiber, and a warning counts them.
   */
  private forceCloseAfterDrain(self: AnyFiber): Effect.Effect<void> {
    return Effect.suspend(() => {
      const holders = this.takeBackLeased() as Set<AnyFiber>
      for (const creator of this.creators) holders.add(creator)
      holders.delete(self)
      return Effect.logWarning(
        `drain timeout: interrupting ${holders.size} fiber(s) still holding or creating items`
      ).pipe(
        Effect.zipRight(Effect.forEach(holders, (fiber) => fiber.interruptAsFork(self.id()), { discard: true })),
        Effect.zipRight(this.flush()),
        Effect.zipRight(
          Effect.suspend(() =>
            this.closing === 0
              ? Effect.void
              : Effect.logWarning(
                  `drain timeout: ${this.closing} finalizer(s) still running are left to finish in the background`
                )
          )
        )
      )
    })
  }

  /** Sets the occupancy gauges: the pool's, and those of keys with labels of their own. */
  sampleGauges(): void {
    sample(this.tags.pool, this.occupancy(), this.slots.size)
    if (this.shares) PoolMetrics.leases.unsafeUpdate(this.leases, this.tags.pool.labels)
    if (this.settings.metricsPerKey === 0) return
    for (const slot of this.slots.values()) {
      if (!this.tags.isOwn(slot.tags)) continue
      sample(slot.tags, snapshot.keyOccupancy(slot))
      if (this.shares) PoolMetrics.leases.unsafeUpdate(slot.leases, slot.tags.labels)
    }
    if (this.groupTags !== undefined) {
      let otherSize = 0
      let otherIdle = 0
      for (const group of this.groups!.byId.values()) {
        const tags = this.groupTags.forKey(group.id)
        if (this.groupTags.isOwn(tags)) sampleGroup(tags, group.size, group.idle.size)
        else {
          otherSize += group.size
          otherIdle += group.idle.size
        }
      }
      sampleGroup(this.groupTags.others, otherSize, otherIdle)
    }
  }

  stats(): PoolStats {
    this.sampleGauges()
    const now = this.now()
    const perKey: Array<KeyStats> = []
    const busiest = this.shares ? snapshot.busiest(this.items) : undefined
    for (const slot of this.slots.values()) {
      perKey.push(snapshot.keyStats(slot, now, busiest === undefined ? undefined : (busiest.get(slot) ?? 0)))
    }
    return {
      name: this.settings.name,
      closed: this.closed,
      keys: this.slots.size,
      ...this.occupancy(),
      ...(this.shares ? { leases: this.leases } : {}),
      created: this.created,
      destroyed: this.destroyed,
      timeouts: this.timeouts,
      failures: this.failures,
      perKey,
      ...(this.groups === undefined ? {} : { perGroup: snapshot.groupStats(this.groups.byId.values()) }),
      config: configInForce(this.settings)
    }
  }
}

/** @internal */
export type Restore = <X, EX, RX>(effect: Effect.Effect<X, EX, RX>) => Effect.Effect<X, EX, RX>

/** Bounds a check of an item (health check, heartbeat, validation): a timeout is its failure. */
export const bounded = (
  check: Effect.Effect<unknown, unknown>,
  millis: number,
  what: CheckTimeout["check"]
): Effect.Effect<unknown, unknown> =>
  Effect.timeoutFail(check, {
    duration: Duration.millis(millis),
    onTimeout: () => new CheckTimeout({ check: what, timeoutMillis: millis })
  })

/** Health checks and heartbeats run this many items at a time. */
const maintenanceConcurrency = 4

/** A failed check, as the kernel takes it. */
const checkFailure = (cause: Cause.Cause<unknown>): CheckFailure => ({
  interrupted: Cause.isInterruptedOnly(cause),
  error: describeCause(cause),
  cause
})

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

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

const closeScope = (scope: Scope.CloseableScope, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Effect.catchAllCause(Scope.close(scope, exit), (cause) =>
    Effect.annotateLogs(Effect.logWarning("an item's finalizer failed", cause), annotations)
  )

/** Closes an item's scope (its handle, see `create`). */
const closeItem = (item: Item<any, any>): Effect.Effect<void> =>
  closeScope(item.handle as Scope.CloseableScope, Exit.void)
