import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as PoolMetrics from "../../PoolMetrics.js"
import type { KeyStats, PoolStats } from "../../PoolStats.js"
import * as snapshot from "../kernel/snapshot.js"
import { sample, sampleGroup } from "../metrics.js"
import { configInForce } from "../settings.js"
import type { AnyFiber } from "./engine.js"
import { Maintaining } from "./maintenance.js"

/**
 * The engine as the public object uses it: the kernel's state and rules, and
 * every effect that carries out its decisions.
 *
 * @internal
 */
export class PoolState<K, A, E> extends Maintaining<K, A, E> {
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
      perKey.push(this.keyStats(slot, now, busiest === undefined ? undefined : (busiest.get(slot) ?? 0)))
    }
    return {
      name: this.settings.name,
      closed: this.closed,
      keys: this.slots.size,
      ...this.occupancy(),
      ...(this.shares ? { leases: this.leases } : {}),
      ...(this.creator.gate === undefined ? {} : { awaitingPermit: this.awaitingPermit }),
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
