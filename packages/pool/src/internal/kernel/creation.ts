/**
 * Creations, as a small state machine: `Reserved` (counted in `creating`, so
 * limits see it at once) → `Started` → `Succeeded` | `Failed`, or `Reserved`
 * → `Cancelled`. A caller granted one (`Waiter.reserved`) starts it from its
 * own fiber (`settle` returns `start`), or gives the reservation back, exactly
 * once, if it was served, failed or interrupted first. Also: making room for
 * a creation (evicting an idle item), granting the next creation when one
 * ends, creation backoff (`backoffDelay`), and reservations for refills and
 * pre-warming.
 *
 * @internal
 */
import type { PoolError } from "../../PoolError.js"
import { Keys } from "./keys.js"
import { type Holder, Item, type KeySlot, type Lease, type Waiter } from "./model.js"

/**
 * What `settle` found once a waiter's caller ran again: start the granted
 * creation (`start`), a lease to hand over (`lease`), a failure (`failed`),
 * or nothing (`gone`: the caller was interrupted while queued).
 *
 * @internal
 */
export type Settled<K, A> =
  | { readonly _tag: "start" }
  | { readonly _tag: "lease"; readonly lease: Lease<K, A> }
  | { readonly _tag: "failed"; readonly error: PoolError | undefined; readonly cause: unknown }
  | { readonly _tag: "gone" }

const START = { _tag: "start" } as const
const GONE = { _tag: "gone" } as const

/** `createBackoff` in milliseconds. */
export interface Backoff {
  readonly initial: number
  readonly max: number
}

/**
 * How long a key's next creation waits after `failures` failed creations in
 * a row (before this one): doubling per failure, capped at `max`, then
 * scaled by a jitter in [0.5, 1) from `random` (a number in [0, 1)). The
 * jitter spreads the retries of many keys; the engine passes `Math.random`,
 * a test a fixed or seeded one.
 */
export const backoffDelay = (backoff: Backoff, failures: number, random: number): number =>
  Math.min(backoff.max, backoff.initial * 2 ** failures) * (0.5 + random / 2)

/** Creation: reservations, grants and the outcomes of creations. */
export abstract class Creation<K, A> extends Keys<K, A> {
  /**
   * When only the total stands between `slot` and a creation, makes room by
   * destroying the least recently used idle item (of another key: a key with
   * idle items has no waiters, and a caller takes its own key's idle item
   * first). Runs wherever a creation may be granted: on admission and when a
   * creation ends (a waiter held back by `createConcurrency`).
   */
  makeRoom(slot: KeySlot<K, A>): void {
    const group = slot.group
    if (group?.full && this.keyMayGrow(slot)) {
      // The tenant is at its limit: its own oldest idle item (of any of its keys) makes room.
      const victim = group.idle.head?.value
      if (victim !== undefined) this.destroy(victim, "evicted")
    }
    if (this.mayGrow(slot) && this.size >= this.settings.maxTotal) {
      const victim = this.lru.head
      if (victim !== undefined) this.destroy(victim, "evicted")
    }
  }

  /** A creation of `slot` ended (either way): its key may start the next one. */
  creationEnded(slot: KeySlot<K, A>): void {
    if (this.closed || slot.waiters.size === slot.pending) return
    if (this.shares) {
      // Shared: as many creations as the waiters need (each new item serves `maxLeasesPerItem`), limits allowing.
      while (this.wantsItem(slot)) {
        this.makeRoom(slot)
        const next = this.firstBare(slot)
        if (next === undefined || !this.canCreate(slot)) return
        this.reserve(slot)
        this.grant(next)
      }
      return
    }
    this.makeRoom(slot)
    const next = this.firstBare(slot)
    if (next !== undefined && this.canCreate(slot)) {
      this.reserve(slot)
      this.grant(next)
    }
  }

  /** Gives a reservation back (its creation was cancelled or failed): the freed slot goes on. */
  unreserve(slot: KeySlot<K, A>): void {
    slot.creating--
    this.creating--
    if (slot.group !== undefined) slot.group.size--
    this.checkDrained()
    this.freed(slot)
  }

  /**
   * A waiter's caller runs again after parking (served, timed out, closed or
   * `interrupted`) and settles what it owns. A creation granted to it and not
   * started yet (Reserved) is started now if the caller still waits and the
   * pool is open (`start`: the caller spawns it, then waits again, deadline
   * and all); else it is Cancelled: the reservation is given back, exactly
   * once, and goes to the next waiter. Then an item is handed over, a
   * failure reported, or a caller interrupted while queued leaves the queue.
   */
  settle(waiter: Waiter<K, A>, interrupted: boolean): Settled<K, A> {
    if (waiter.reserved) {
      waiter.reserved = false
      if (waiter.state === "waiting" && !interrupted && !this.closed) return START
      // Served, failed or gone before its creation started: the reservation goes to the next waiter.
      this.unpend(waiter)
      if (waiter.state === "waiting") {
        // Interrupted while still queued: it leaves the queue before the reservation is freed, or the
        // freed reservation would be granted straight back to it and leak with it.
        waiter.state = "settled"
        waiter.wake = undefined
        waiter.slot.breaker?.abandon(waiter.probe)
        this.dequeue(waiter)
        this.unreserve(waiter.slot)
        this.dropIfEmpty(waiter.slot)
        return GONE
      }
      this.unreserve(waiter.slot)
    }
    const state = waiter.state
    waiter.state = "settled"
    waiter.wake = undefined
    switch (state) {
      case "item": {
        const lease = waiter.item!
        waiter.item = undefined
        this.io.update(waiter.slot.tags, "acquireWait", (this.now() - waiter.since) / 1000)
        return { _tag: "lease", lease }
      }
      case "failed":
        waiter.slot.breaker?.abandon(waiter.probe)
        return { _tag: "failed", error: waiter.error, cause: waiter.cause }
      default:
        // Still queued: the caller was interrupted while waiting (its creation, if any, goes on).
        waiter.slot.breaker?.abandon(waiter.probe)
        this.dequeue(waiter)
        this.dropIfEmpty(waiter.slot)
        return GONE
    }
  }

  /**
   * A waiter's creation made `item` (Succeeded; the item is counted leased):
   * a probe's goes to its caller if it still waits (else the connect itself
   * is the probe's success); any other goes back like a returned lease, to
   * the key's first waiter or to idle.
   */
  delivered(item: Item<K, A>, waiter: Waiter<K, A>): void {
    item.holder = undefined
    if (item.probe) {
      if (waiter.state === "waiting" && !this.closed) {
        this.dequeue(waiter)
        if (this.shares) {
          item.probe = false
          waiter.item = this.lendShared(item, this.now(), waiter.fiber, true, false)
          this.serveShared(item.slot, this.now())
        } else {
          item.holder = waiter.fiber
          waiter.probe = true
          waiter.item = item
        }
        this.settleWaiter(waiter, "item")
        return
      }
      this.report(item.slot, "success", true, this.now())
      item.probe = false
    }
    // Handed on first (the caller itself, if it is the key's first waiter), then the caller may be granted anew.
    this.endExclusive(item, undefined)
    this.creationOver(waiter)
  }

  /** A waiter's creation failed (after `createFailed`): the waiter, if it still waits, may be granted another. */
  creationLost(waiter: Waiter<K, A>): void {
    this.creationOver(waiter)
    this.dropIfEmpty(waiter.slot)
  }

  /** A waiter's creation is over without serving it: it waits as any other, and may be granted another. */
  creationOver(waiter: Waiter<K, A>): void {
    if (waiter.state !== "waiting" || !waiter.pending) return
    this.unpend(waiter)
    this.creationEnded(waiter.slot)
  }

  /**
   * A creation of `slot` Succeeded: its reservation becomes an item, leased
   * to `holder`. `started` is when the creation started, `since` when the
   * caller it serves arrived (-1: a caller's wait is measured when it is
   * served, see `settle`). With exclusive leases the key may start its next
   * creation; with shared ones the new item serves waiters first.
   */
  createSucceeded(
    slot: KeySlot<K, A>,
    value: A,
    handle: unknown,
    fingerprint: string | undefined,
    holder: Holder,
    probe: boolean,
    started: number,
    since: number
  ): Item<K, A> {
    const rare = slot.rare
    if (rare !== undefined) {
      rare.createFailures = 0
      rare.backoffUntil = 0
    }
    const item = this.register(slot, value, handle, fingerprint, holder)
    item.probe = probe
    const now = this.now()
    this.io.update(slot.tags, "createDuration", (now - started) / 1000)
    if (since >= 0) this.io.update(slot.tags, "acquireWait", (now - since) / 1000)
    if (!this.shares) this.creationEnded(slot)
    return item
  }

  /**
   * A creation of `slot` Failed, was interrupted, or was refused by the
   * creation gate before it started. A failure or a refusal fails the caller
   * it was started for (`owner`) with `cause` if it still waits. A failure,
   * before a circuit that opens now fails the rest, counts as a connection
   * failure whatever its error says, and backs the key's next creation off;
   * an interruption or a refusal says nothing of the resource (no verdict).
   * The reservation is given back either way, exactly once.
   */
  createFailed(
    slot: KeySlot<K, A>,
    owner: Waiter<K, A> | undefined,
    probe: boolean,
    how: "failed" | "interrupted" | "refused",
    cause: unknown
  ): void {
    const now = this.now()
    if (how !== "failed") {
      slot.breaker?.abandon(probe)
      if (how === "refused") {
        this.failOwner(owner, cause)
        this.decisions.push({
          _tag: "Log",
          level: "Debug",
          message: `the gate refused a creation of key ${slot.description}`,
          cause
        })
      }
    } else {
      this.failOwner(owner, cause)
      slot.extras().failures++
      this.failures++
      this.io.update(slot.tags, "acquireFailures", 1)
      this.decisions.push({
        _tag: "Log",
        level: "Warning",
        message: `creating an item of key ${slot.description} failed`,
        cause
      })
      this.backOff(slot, now)
      this.report(slot, "connection", probe, now)
    }
    this.unreserve(slot)
    this.creationEnded(slot)
  }

  /** Fails the caller a creation was started for with the creation's error, if it still waits for it. */
  failOwner(owner: Waiter<K, A> | undefined, cause: unknown): void {
    if (owner === undefined || owner.state !== "waiting" || !owner.pending) return
    owner.cause = cause
    this.dequeue(owner)
    this.settleWaiter(owner, "failed")
  }

  register(slot: KeySlot<K, A>, value: A, handle: unknown, fingerprint: string | undefined, fiber: Holder): Item<K, A> {
    const now = this.now()
    const item = new Item(slot, value, handle, fingerprint, now, this.shares)
    slot.creating--
    this.creating--
    slot.created++
    this.created++
    this.io.update(slot.tags, "created", 1)
    this.items.add(item)
    this.lease(item, now, fiber)
    return item
  }

  /** After a failed creation, the key's next one waits: doubling per failure, capped, with jitter. */
  backOff(slot: KeySlot<K, A>, now: number): void {
    const backoff = this.settings.createBackoff
    if (backoff === undefined) return
    const rare = slot.extras()
    const delay = backoffDelay(backoff, rare.createFailures, this.random())
    rare.createFailures++
    rare.backoffUntil = now + delay
  }

  /**
   * Reserves a creation for the pool's own use (a refill or a pre-warm) if
   * `slot` still lacks items (`missing`) and may create one now without
   * waiting: pool open, key live, circuit closed, limits and
   * `createConcurrency` allowing. It never evicts and never queues, so it
   * never competes with callers.
   */
  reserveFill(slot: KeySlot<K, A>, missing: (slot: KeySlot<K, A>) => number): boolean {
    if (this.closed || this.slots.get(slot.id) !== slot) return false
    if (slot.breaker !== undefined && slot.breaker.state !== "closed") return false
    if (missing(slot) <= 0 || !this.canCreate(slot)) return false
    this.reserve(slot)
    return true
  }

  readonly belowFloorBy = (slot: KeySlot<K, A>): number =>
    this.settings.minIdlePerKey - slot.idle.size - slot.checking - slot.creating
}
