/**
 * Keys' and idle items' lifetimes: dropping an empty key (or keeping it while
 * it remembers failures), evicting an idle key at `maxKeys`, cleanup's idle
 * and lifetime expiry, and asking for refills below `minIdlePerKey`.
 *
 * @internal
 */
import type { CleanupReport } from "../../PoolStats.js"
import * as expiry from "./expiry.js"
import type { Item, KeySlot } from "./model.js"
import { Sharing } from "./sharing.js"

/** Keys: dropping, evicting and expiring keys and idle items. */
export abstract class Keys<K, A> extends Sharing<K, A> {
  dropIfEmpty(slot: KeySlot<K, A>): void {
    if (slot.size === 0 && slot.waiters.size === 0 && slot !== this.pinned && this.slots.get(slot.id) === slot) {
      // A key with a floor stays, and is refilled (see `minIdlePerKey`).
      if (slot.refilling) return
      // A key whose breaker or creation backoff remembers failures is kept
      // until cleanup finds it quiet: forgetting would let callers hammer a
      // server that is down.
      if (this.remembersFailures(slot, this.now())) this.lingering.add(slot)
      else this.drop(slot)
    }
  }

  /** Whether an empty key must be kept for the failures it remembers (see `expiry.remembersFailures`). */
  remembersFailures(slot: KeySlot<K, A>, now: number): boolean {
    return expiry.remembersFailures(slot, now, this.settings.cleanupInterval)
  }

  drop(slot: KeySlot<K, A>): void {
    if (slot.group !== undefined) this.groups?.leave(slot.group)
    this.slots.delete(slot.id)
    this.lingering.delete(slot)
    this.keysDropped++
  }

  /** Evicts a key kept only for its failures, or else one whose items are all idle, least recently used first. */
  evictIdleKey(): boolean {
    for (const slot of this.lingering) {
      this.drop(slot)
      return true
    }
    for (let idle = this.lru.head; idle !== undefined; idle = idle.lruNext) {
      const slot = idle.slot
      if (slot.inUse === 0 && slot.creating === 0 && slot.waiters.size === 0) {
        let item: Item<K, A> | undefined
        while ((item = slot.idle.head) !== undefined) this.destroy(item, "evicted")
        // An evicted key goes even if it remembers failures or has a floor:
        // otherwise it would linger, still counted, and `maxKeys` be exceeded.
        if (this.slots.get(slot.id) === slot) this.drop(slot)
        return true
      }
    }
    return false
  }

  /**
   * Cleanup's pass: destroys idle items past `idleTimeout` (keeping
   * `minIdlePerKey`) or `maxLifetime`, and drops keys kept only by failures
   * gone quiet. A full pass over idle items: health checks return items out
   * of release order, so the list is only roughly sorted.
   */
  expireIdle(now: number): CleanupReport {
    const before = this.size
    const dropped = this.keysDropped
    let cleaned = 0
    for (let item = this.lru.head, next: Item<K, A> | undefined; item !== undefined; item = next) {
      next = item.lruNext
      const verdict = expiry.expired(item, now, this.settings)
      if (verdict !== undefined) {
        this.destroy(item, verdict)
        cleaned++
      }
    }
    for (const slot of this.lingering) if (!this.remembersFailures(slot, now)) this.drop(slot)
    return { before, after: this.size, cleaned, keysDropped: this.keysDropped - dropped }
  }

  /** Asks for a refill of every key below `minIdlePerKey` (a no-op, and no scan, when it is 0). */
  askRefills(): void {
    if (this.settings.minIdlePerKey === 0 || this.closed) return
    for (const slot of this.slots.values()) if (this.belowFloor(slot)) this.scheduleRefill(slot)
  }

  /** A background refill of `slot` ended. */
  refilled(slot: KeySlot<K, A>): void {
    slot.refilling = false
    this.dropIfEmpty(slot)
  }
}
