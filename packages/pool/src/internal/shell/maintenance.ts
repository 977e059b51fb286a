/**
 * The keyed pool's shell, third layer: background work — the deadline fiber,
 * idle expiry, health checks and heartbeats, refills up to `minIdlePerKey`,
 * and `prewarm` — and validation of an item taken from idle, next to the
 * checks it shares its timeout and history with.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { CheckTimeout, PoolClosed, type PoolError } from "../../PoolError.js"
import type { CheckResult, CleanupReport } from "../../PoolStats.js"
import type { CheckFailure } from "../kernel/checks.js"
import { Item, itemOf, KeySlot, type Lease, SharedLease } from "../kernel/model.js"
import type { Maintenance } from "../settings.js"
import { Creating } from "./creator.js"
import { type AnyFiber, annotations, type Restore } from "./engine.js"

/**
 * Deadlines, idle expiry, checks, heartbeats, refills and pre-warming, over
 * the kernel's rules and the creation layer.
 *
 * @internal
 */
export abstract class Maintaining<K, A, E> extends Creating<K, A, E> {
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

  /**
   * Validates an item taken from idle before a caller gets it, when due (it
   * was idle at least `validateAfter`; `undefined` when not). `true`: it
   * passed (a shared lease's item then takes other callers' leases). `false`:
   * it failed or outlived `validateTimeout`, was destroyed as broken and went
   * into its key's history, and the caller must try again. Interrupted, the
   * item goes back with no verdict (a probe gives up its place).
   */
  validate(lease: Lease<K, A>, restore: Restore): Effect.Effect<boolean> | undefined {
    const started = this.now()
    const item = itemOf(lease)
    // (A shared lease comes here only when its item must be validated.)
    if (lease instanceof Item && started - item.idleSince < this.settings.validateAfter) return undefined
    const check = bounded(this.settings.validate!(item.value), this.settings.validateTimeout, "validation")
    return Effect.flatMap(Effect.exit(restore(check)), (exit) => {
      if (Exit.isSuccess(exit)) {
        return lease instanceof SharedLease ? Effect.as(this.open(lease), true) : Effect.succeed(true)
      }
      if (Cause.isInterruptedOnly(exit.cause)) return Effect.zipRight(this.giveBack(lease), Effect.interrupt)
      // Only failed validations go into the history: successes would crowd out the checks.
      this.record(item.slot, "validate", started, this.now(), exit)
      // Destroying it refills the key if it falls below its floor.
      return Effect.as(this.releaseBroken(lease), false)
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
}

/** Bounds a check of an item (health check, heartbeat, validation): a timeout is its failure. */
const bounded = (
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
