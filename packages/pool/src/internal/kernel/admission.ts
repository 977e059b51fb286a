/**
 * Admission: what a caller's `get` gets, in one step: the key's slot (new
 * credentials retire idle items, `maxKeys` evicts an idle key), the breaker's
 * gate, an idle item, a lease of a shared item with room, a creation of its
 * own, or a place in the queue.
 *
 * @internal
 */
import type { KeyLimitExceeded, PoolError } from "../../PoolError.js"
import { Breaker, PASS, PROBE } from "./breaker.js"
import { Eviction } from "./eviction.js"
import { needsItem } from "./leases.js"
import { type Holder, type Item, KeySlot, type Lease, type SharedLease, type Waiter } from "./model.js"

/** How many past fingerprints a key remembers (see `KeyExtras.retired`). */
const retiredFingerprints = 8

/** Admission: deciding what a caller gets. */
export abstract class Admission<K, A> extends Eviction<K, A> {
  /**
   * Decides, in one synchronous step, what a `get` gets: an idle item (leased
   * to `fiber`), a place in the queue, or an error. A caller granted a
   * creation at once (its reservation counted) also gets its place in the
   * queue, marked `reserved`: its own fiber starts the creation and it waits
   * for it like any waiter, `acquireTimeout` and all. Whether it is a
   * half-open circuit's probe is recorded on the lease or the waiter.
   */
  admit(key: K, fiber: Holder, since: number): Lease<K, A> | Waiter<K, A> | PoolError {
    if (this.closed) return this.io.errors.closed(this.settings.describeKey(key))
    const now = this.now()
    const slot = this.slotFor(key, now)
    if (!(slot instanceof KeySlot)) return slot as PoolError
    let probe = false
    if (slot.breaker !== undefined) {
      const verdict = slot.breaker.admit(now)
      if (verdict > PASS) {
        // Refused: a key kept only for its failures goes back to waiting for cleanup (`slotFor` took it out).
        this.dropIfEmpty(slot)
        return this.circuitOpen(slot, verdict)
      }
      probe = verdict === PROBE
    }
    this.pinned = slot
    try {
      if (this.shares) return this.admitShared(slot, key, fiber, since, now, probe)
      const item = this.takeIdle(slot, now)
      if (item !== undefined) {
        this.lease(item, now, fiber)
        item.probe = probe
        return item
      }
      this.makeRoom(slot)
      if (slot.waiters.size === slot.pending && this.canCreate(slot)) {
        this.reserve(slot)
        return this.enqueueCreator(slot, key, fiber, since, probe)
      }
      return this.enqueue(slot, key, fiber, since, probe)
    } finally {
      this.pinned = undefined
    }
  }

  /**
   * `admit` with shared leases: an idle item first (it has the fewest
   * leases: none), else the open item with the fewest leases if it has room;
   * else a creation when the key's waiters (the caller included) outnumber
   * what the creations in flight will serve and the limits allow; else the
   * queue. An idle item that is validated takes no other lease until it
   * passes (see `open`).
   */
  admitShared(
    slot: KeySlot<K, A>,
    key: K,
    fiber: Holder,
    since: number,
    now: number,
    probe: boolean
  ): SharedLease<K, A> | Waiter<K, A> {
    const idle = this.takeIdle(slot, now)
    if (idle !== undefined) {
      this.claim(idle)
      const validate = this.settings.validate !== undefined && now - idle.idleSince >= this.settings.validateAfter
      return this.lendShared(idle, now, fiber, probe, validate)
    }
    const room = this.roomIn(slot, now)
    if (room !== undefined) return this.lendShared(room, now, fiber, probe, false)
    if (needsItem(slot.waiters.size + 1, slot.creating, this.maxLeases)) {
      this.makeRoom(slot)
      if (this.canCreate(slot)) {
        this.reserve(slot)
        return this.enqueueCreator(slot, key, fiber, since, probe)
      }
    }
    return this.enqueue(slot, key, fiber, since, probe)
  }

  slotFor(key: K, now: number): KeySlot<K, A> | KeyLimitExceeded {
    const s = this.settings
    const id = s.keyId(key)
    const fingerprint = s.fingerprint?.(key)
    let slot = this.slots.get(id)
    if (slot === undefined) {
      // The user's functions of the key run before anything changes: one that throws leaves the pool as it was.
      const description = s.describeKey(key)
      const max = s.maxPerKey(key)
      const groupId = s.group?.(key)
      if (this.slots.size >= s.maxKeys && !this.evictIdleKey()) {
        return this.io.errors.keyLimit(description, s.maxKeys, this.occupancy())
      }
      const breaker = s.breaker === undefined ? undefined : new Breaker(s.breaker, this.origin)
      const tags = this.io.tagsFor(description)
      slot = new KeySlot<K, A>(id, key, description, max, fingerprint, now, breaker, tags)
      if (this.groups !== undefined) slot.group = this.groups.join(groupId!)
      this.slots.set(id, slot)
    } else if (fingerprint !== slot.fingerprint && !slot.rare?.retired?.includes(fingerprint)) {
      // Credentials changed: idle items of the old version go now, leased
      // ones when they come back (see `release`).
      const retired = (slot.extras().retired ??= [])
      if (retired.push(slot.fingerprint) > retiredFingerprints) retired.shift()
      slot.fingerprint = fingerprint
      // Pinned meanwhile: a key left empty by its retired items is being asked for, so it must
      // not be dropped (its caller would be served by a slot no longer in the index).
      const pinned = this.pinned
      this.pinned = slot
      let stale: Item<K, A> | undefined
      while ((stale = slot.idle.head) !== undefined) this.destroy(stale, "credentials")
      this.pinned = pinned
    }
    slot.key = key
    this.lingering.delete(slot)
    return slot
  }

  /** Pops the most recently used idle item that is still fit to hand out. */
  takeIdle(slot: KeySlot<K, A>, now: number): Item<K, A> | undefined {
    let item: Item<K, A> | undefined
    while ((item = slot.idle.tail) !== undefined) {
      const unfit = this.unfit(item, now)
      if (unfit === undefined) {
        this.fromIdle(item)
        return item
      }
      this.destroy(item, unfit)
    }
    return undefined
  }
}
