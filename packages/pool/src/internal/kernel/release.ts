/**
 * The end of a lease (exclusive or shared) and of an item: the breaker's
 * verdict on it, handing a returned item to the next waiter (or destroying it
 * to make room for an older waiter of another key), putting it back idle,
 * destroying it (a `Destroy` decision) and passing its slot on.
 *
 * @internal
 */
import type * as PoolMetrics from "../../PoolMetrics.js"
import type { Outcome } from "./breaker.js"
import { Creation } from "./creation.js"
import { afterLease } from "./leases.js"
import { type Item, itemOf, type KeySlot, type Lease, SharedLease, type Waiter } from "./model.js"

/** Release: ending leases, returning and destroying items. */
export abstract class Release<K, A> extends Creation<K, A> {
  /**
   * A healthy leased item came back (still counted as in use): to its key's
   * first waiter, to make room for an older waiter of another key, or to idle.
   */
  returned(item: Item<K, A>, now: number): void {
    const slot = item.slot
    const mine = slot.waiters.head?.value
    const full = this.size >= this.settings.maxTotal || slot.group?.full === true
    if (full && this.waiters.size > slot.waiters.size) {
      const other = this.oldestUnblockedBy(slot)
      if (other !== undefined && (mine === undefined || other.seq < mine.seq)) {
        // Fairness across keys: the total is exhausted and a waiter of another
        // key came first; this item makes room for it.
        this.destroy(item, "evicted")
        return
      }
    }
    if (mine !== undefined && this.shares) {
      // Shared: the key's first waiters, up to `maxLeasesPerItem` of them, share it.
      item.holder = undefined
      item.probe = false
      let waiter: Waiter<K, A> | undefined
      while (item.leases < this.maxLeases && (waiter = slot.waiters.head?.value) !== undefined) {
        this.dequeue(waiter)
        waiter.item = this.lendShared(item, now, waiter.fiber, waiter.probe, false)
        this.settleWaiter(waiter, "item")
      }
      // Those left over may need another item.
      this.creationEnded(slot)
      return
    }
    if (mine !== undefined) {
      this.dequeue(mine)
      item.holder = mine.fiber
      item.probe = mine.probe
      mine.item = item
      this.settleWaiter(mine, "item")
      return
    }
    slot.inUse--
    this.inUse--
    item.state = "idle"
    item.idleSince = now
    item.holder = undefined
    this.toIdle(item)
  }

  /** A slot of `slot`'s key (and of the total) was freed. */
  freed(slot: KeySlot<K, A>): void {
    if (!this.closed) {
      const next =
        Number.isFinite(this.settings.maxTotal) || slot.group !== undefined
          ? this.oldestCreatable(undefined)
          : this.mayGrow(slot) && this.wantsItem(slot)
            ? this.firstBare(slot)
            : undefined
      if (next !== undefined) {
        this.reserve(next.slot)
        this.grant(next)
      }
    }
    if (this.belowFloor(slot)) this.scheduleRefill(slot)
    this.dropIfEmpty(slot)
  }

  /**
   * Takes an item out of the pool and frees its slot; its scope is closed by
   * whoever runs the current step (a `Destroy` decision).
   */
  destroy(item: Item<K, A>, reason: PoolMetrics.DestroyReason): void {
    const slot = item.slot
    if (item.state === "destroyed") return
    this.io.update(slot.tags, "destroyed", 1, "reason", reason)
    if (reason === "evicted") {
      this.decisions.push({ _tag: "Log", level: "Debug", message: `evicted an idle item of key ${slot.description}` })
    }
    if (slot.group !== undefined) slot.group.size--
    if (item.state === "idle") {
      this.fromIdle(item)
    } else {
      slot.inUse--
      this.inUse--
    }
    if (this.shares) {
      // Only shutdown destroys an item that still has shared leases: they end as no-ops.
      const rare = slot.extras()
      const share = item.rare!
      rare.leases -= share.leases
      this.leases -= share.leases
      share.leases = 0
      rare.shared?.remove(share)
    }
    item.state = "destroyed"
    item.holder = undefined
    slot.destroyed++
    this.destroyed++
    this.items.delete(item)
    this.decisions.push({ _tag: "Destroy", item, reason })
    this.freed(slot)
  }

  /** Ends a lease, with the breaker's verdict on it if it gives one (`undefined`: none). */
  endLease(lease: Lease<K, A>, outcome: Outcome | undefined): void {
    if (lease instanceof SharedLease) this.endShared(lease, outcome)
    else this.endExclusive(lease, outcome)
  }

  /**
   * Ends one shared lease. A connection failure marks the item broken for
   * everyone: it takes no new lease, its other holders finish (or fail) on
   * their own, and the last one out destroys it. An item with leases left
   * takes new ones again (if fit) and serves the key's first waiter; after
   * its last lease it goes back like an exclusive lease (to waiters or idle)
   * or is destroyed (see `afterLease`).
   */
  endShared(lease: SharedLease<K, A>, outcome: Outcome | undefined): void {
    if (lease.done) return
    lease.done = true
    this.live.delete(lease)
    const item = lease.item
    // Destroyed meanwhile (shutdown's drain timeout): its counts went with it.
    if (item.state !== "leased") return
    const now = this.now()
    const slot = item.slot
    slot.lastUsed = now
    item.lastUsed = now
    this.io.update(slot.tags, "leaseDuration", (now - lease.since) / 1000)
    const rare = slot.extras()
    const share = item.rare!
    share.leases--
    rare.leases--
    this.leases--
    if (outcome === "connection") item.invalid ??= "invalidated"
    if (slot.breaker !== undefined) {
      if (outcome !== undefined) this.report(slot, outcome, lease.probe, now)
      else slot.breaker.abandon(lease.probe)
    }
    const unfit = this.unfit(item, now)
    switch (afterLease(share.leases, unfit === undefined)) {
      case "shared":
        if (unfit !== undefined) this.closeShare(item)
        else {
          rare.shared?.update(share)
          this.serveShared(slot, now)
        }
        break
      case "returned":
        rare.shared?.remove(share)
        this.returned(item, now)
        break
      case "retired":
        this.destroy(item, unfit!)
        break
    }
    this.checkDrained()
  }

  /** Ends a lease with the breaker's verdict on it, if it gives one. */
  endExclusive(item: Item<K, A>, outcome: Outcome | undefined): void {
    if (item.state !== "leased") return
    const now = this.now()
    const slot = item.slot
    slot.lastUsed = now
    if (item.holder !== undefined) this.io.update(slot.tags, "leaseDuration", (now - item.lastUsed) / 1000)
    item.lastUsed = now
    if (outcome === "connection") item.invalid ??= "invalidated"
    if (slot.breaker !== undefined) {
      if (outcome !== undefined) this.report(slot, outcome, item.probe, now)
      else slot.breaker.abandon(item.probe)
    }
    item.probe = false
    const unfit = this.unfit(item, now)
    if (unfit === undefined) this.returned(item, now)
    else this.destroy(item, unfit)
    this.checkDrained()
  }

  /**
   * Destroys an item the pool found broken (a failed check or validation).
   * Its key remembers the failure (see `remembersFailures`), so the key's
   * health history survives and a refill or the caller's next try finds it.
   * The check reports to the breaker itself; a failed validation is no
   * verdict on the upstream (the caller goes on to a fresh item, whose
   * outcome counts).
   */
  markBroken(lease: Lease<K, A>): void {
    const item = itemOf(lease)
    item.invalid = "failed_check"
    item.slot.extras().lastBroken = this.now()
  }

  /**
   * Marks a leased item broken: it is destroyed when its lease (or its last
   * shared lease) ends, and with shared leases it takes no new one from now.
   */
  markInvalid(item: Item<K, A>): void {
    item.invalid = "invalidated"
    if (this.shares) this.closeShare(item)
  }

  /** Tells a key's breaker how a call went, failing the key's waiters if the circuit opens. */
  report(slot: KeySlot<K, A>, outcome: Outcome, probe: boolean, now: number): void {
    const breaker = slot.breaker
    if (breaker === undefined) return
    if (outcome === "connection") slot.extras().lastFailure = now
    const before = breaker.tell(outcome, now, probe)
    if (before !== undefined) {
      this.io.update(slot.tags, "breakerTransitions", 1, "to", breaker.state)
      const line = `circuit of key ${slot.description}: ${before} -> ${breaker.state}`
      this.decisions.push({ _tag: "Log", level: breaker.state === "closed" ? "Info" : "Warning", message: line })
    }
    if (breaker.state === "open" && slot.waiters.size > 0) {
      const retryAfter = breaker.retryAfter(now)
      let waiter: Waiter<K, A> | undefined
      while ((waiter = slot.waiters.head?.value) !== undefined) this.fail(waiter, this.circuitOpen(slot, retryAfter))
    }
  }
}
