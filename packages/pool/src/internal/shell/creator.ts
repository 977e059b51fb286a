/**
 * The keyed pool's shell, second layer: a caller's wait (parking, resuming
 * with what the kernel settled) and creations — a caller's on a fiber of its
 * own, bounded by `createTimeout`, after the key's backoff and the creation
 * gate, in a fresh scope that becomes the item's.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { GateContext } from "../../KeyedPool.js"
import { CreateTimeout, type PoolError } from "../../PoolError.js"
import type { Item, KeySlot, Lease, Waiter } from "../kernel/model.js"
import { type AnyFiber, closeScope, Engine, type Restore } from "./engine.js"
import { makeItemScope } from "./itemScope.js"

/**
 * Waiting and creating: the caller's own fiber waits; a creation granted to
 * it runs on a fiber of its own (see `spawn`).
 *
 * @internal
 */
export abstract class Creating<K, A, E> extends Engine<K, A, E> {
  /** Creations waiting for the creation gate's permit right now (counted in `creating` too). */
  awaitingPermit = 0

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
    return Effect.flatMap(makeItemScope, (itemScope) =>
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
    return Effect.flatMap(itemScope === undefined ? makeItemScope : Effect.succeed(itemScope), (scope) => {
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
        // Counted while it waits for its permit (stats' `awaitingPermit`), whatever ends the wait.
        const asking = Effect.acquireUseRelease(
          Effect.sync(() => this.awaitingPermit++),
          () => gate(this.gateContext(slot, key)),
          () => Effect.sync(() => this.awaitingPermit--)
        )
        attempt = Effect.zipRight(
          asking,
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
}
