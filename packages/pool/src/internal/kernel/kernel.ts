/**
 * The keyed pool's kernel: per-key slots, items, waiters, and every rule of
 * admission, dispatch, release, expiry, breaker accounting and shutdown, as
 * synchronous steps over plain data. It imports nothing from `effect` at run
 * time: the time, the key index, errors and metrics come through ports
 * (`KernelIO`, `SlotIndex`), items to close, refills and log lines are
 * `Decision`s the shell performs when the step ends (`takeDecisions`), and a
 * parked caller is woken through `KernelIO.wake`. The shell (`poolState.ts`)
 * runs the user's effects (creations, finalizers, checks) and feeds their
 * outcomes back as events (`settle`, `created`, `createFailed`, `delivered`,
 * `endLease`, ...).
 *
 * A creation is `Reserved → Started → Succeeded | Failed`, or `Reserved →
 * Cancelled`: a caller granted one (`Waiter.reserved`) holds a reservation
 * that counts toward the limits at once; its own fiber reports that it
 * starts the creation, or gives the reservation back if it was served,
 * failed or interrupted first (`settle`).
 *
 * @internal
 */
import type { KeyLimitExceeded, Occupancy, PoolError, PoolTimeout } from "../../PoolError.js"
import type * as PoolMetrics from "../../PoolMetrics.js"
import type { CleanupReport, ItemDetails } from "../../PoolStats.js"
import type { Tags } from "../metrics.js"
import type { Resolved } from "../settings.js"
import { Breaker, type Outcome, PASS, PROBE } from "./breaker.js"
import { backoffDelay } from "./creation.js"
import type { Decision } from "./decisions.js"
import * as expiry from "./expiry.js"
import { Groups } from "./groups.js"
import { ItemIndex } from "./itemIndex.js"
import { afterLease, LeaseHeap, needsItem, withRoom } from "./leases.js"
import { LinkedList } from "./linkedList.js"
import { type Holder, Item, itemOf, KeySlot, type Lease, SharedLease, Waiter } from "./model.js"
import * as snapshot from "./snapshot.js"

/**
 * Finds a key's slot by the key's id (`settings.keyId`). The shell injects
 * it: structural keys (`Equal`/`Hash`) need `effect` at run time.
 *
 * @internal
 */
export interface SlotIndex<V> {
  readonly size: number
  get(id: unknown): V | undefined
  set(id: unknown, value: V): void
  delete(id: unknown): void
  values(): IterableIterator<V>
}

/** The metrics a kernel step updates (counters and histograms; see `PoolMetrics`). */
export type Metric =
  | "created"
  | "destroyed"
  | "leaseDuration"
  | "acquireWait"
  | "createDuration"
  | "acquireTimeouts"
  | "acquireFailures"
  | "breakerTransitions"

/**
 * What the kernel asks of its shell in the middle of a step, each a plain
 * synchronous call: the time, waking a parked caller, building the errors a
 * caller fails with, updating a metric, and telling that the pool drained.
 *
 * @internal
 */
export interface KernelIO {
  /** The time, in milliseconds. */
  now(): number
  /** A waiter's outcome was written on it (or a creation was granted to it): resume its caller. */
  wake(waiter: Waiter<any, any>): void
  /** The first waiter arrived: the deadline timer, if parked, starts. */
  waiting(): void
  /** The pool is closed and nothing is leased, being created or being closed. */
  drained(): void
  /** Adds `n` to a metric of a key (with one extra label, if given). */
  update(tags: Tags, metric: Metric, n: number, label?: string, value?: string): void
  /** Metric labels for a new key. */
  tagsFor(description: string): Tags
  readonly errors: {
    closed(key: string): PoolError
    circuitOpen(key: string, retryAfterMillis: number, consecutiveFailures: number): PoolError
    keyLimit(key: string, maxKeys: number, poolSnapshot: Occupancy): KeyLimitExceeded
    timeout(data: ConstructorParameters<typeof PoolTimeout>[0]): PoolTimeout
  }
}

/** How many past fingerprints a key remembers (see `KeySlot.retired`). */
const retiredFingerprints = 8

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

/**
 * The engine's state and rules. All bookkeeping is synchronous, so each step
 * is atomic with respect to other fibers without locks.
 *
 * @internal
 */
export class Kernel<K, A> {
  constructor(
    readonly settings: Resolved<K>,
    readonly slots: SlotIndex<KeySlot<K, A>>,
    readonly io: KernelIO
  ) {
    this.maxLeases = settings.maxLeasesPerItem
    this.shares = settings.maxLeasesPerItem > 1
    this.groups = settings.group === undefined ? undefined : new Groups(settings.maxPerGroup)
  }

  /** Tenants' groups of keys, in a pool given `group`. */
  readonly groups: Groups<Item<K, A>> | undefined

  /** The backoff jitter's source: `Math.random` (it needs no reproducible seed); a kernel test injects its own. */
  random: () => number = Math.random

  /** What the steps since the last call decided, for the shell to perform (see `Decision`). */
  takeDecisions(): Array<Decision<KeySlot<K, A>, Item<K, A>, Waiter<K, A>>> | undefined {
    if (this.decisions.length === 0) return undefined
    const decisions = this.decisions
    this.decisions = []
    return decisions
  }

  /** Idle items of every key, least recently released at the head. */
  readonly lru = new LinkedList<Item<K, A>>()
  /** Every waiter, oldest first: serves cross-key fairness and deadline expiry. */
  readonly waiters = new LinkedList<Waiter<K, A>>()
  /** Waiters with a creation of their own in flight (see `Waiter.pending`). */
  pending = 0
  /** Live items, each by its own identity (values may be equal), found by value for O(1) `invalidate`. */
  readonly items = new ItemIndex<Item<K, A>, A>()
  /**
   * What the current step decided that whoever runs the step performs when it
   * ends (see `takeDecisions`): items to close, refills to start, log lines.
   * (Wakes go through `KernelIO.wake` in the step: see `KERNEL-PLAN.md`.)
   */
  decisions: Array<Decision<KeySlot<K, A>, Item<K, A>, Waiter<K, A>>> = []
  /** Items whose finalizers are running, each on a fiber of its own (the shell's `closeAll`; see `finalized`). */
  closing = 0

  inUse = 0
  creating = 0
  created = 0
  destroyed = 0
  timeouts = 0
  failures = 0
  keysDropped = 0
  /** How many callers may hold one item at once (`maxLeasesPerItem`). */
  readonly maxLeases: number
  /** Whether leases are shared (`maxLeases` above 1): the exclusive path never looks at sharing. */
  readonly shares: boolean
  /** Callers' shared leases right now. */
  leases = 0
  /** Shared leases not yet ended: their holders are interrupted if shutdown outlasts `drainTimeout`. */
  readonly live = new Set<SharedLease<K, A>>()
  closed = false
  /** Empty keys kept only because they remember recent failures (`remembersFailures`); cleanup drops them. */
  readonly lingering = new Set<KeySlot<K, A>>()
  arrivals = 0
  /** The key being admitted: kept even if it empties for a moment mid-step. */
  pinned: KeySlot<K, A> | undefined

  /** Idle items: exactly the members of the idle LRU. */
  get idle(): number {
    return this.lru.size
  }

  get size(): number {
    return this.idle + this.inUse + this.creating
  }

  now(): number {
    return this.io.now()
  }

  // ---------------------------------------------------------------------------
  // admission
  // ---------------------------------------------------------------------------

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
      if (verdict > PASS) return this.circuitOpen(slot, verdict)
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

  /** The open item of `slot` with the fewest leases, if it has room; items found unfit take no more. */
  roomIn(slot: KeySlot<K, A>, now: number): Item<K, A> | undefined {
    const heap = slot.shared
    if (heap === undefined) return undefined
    let item: Item<K, A> | undefined
    while ((item = withRoom(heap, this.maxLeases)) !== undefined) {
      if (this.unfit(item, now) === undefined) return item
      // Too old, or of old credentials: its current leases finish, then it is retired.
      heap.remove(item)
    }
    return undefined
  }

  /** Counts an item taken out of idle as in use, held by no caller yet. */
  claim(item: Item<K, A>): void {
    item.state = "leased"
    item.holder = undefined
    item.slot.inUse++
    this.inUse++
  }

  /**
   * Adds a shared lease of a leased `item` for `fiber`. Unless `closed` (it
   * is being validated), the item takes more leases while it has room.
   */
  lendShared(item: Item<K, A>, now: number, fiber: Holder, probe: boolean, closed: boolean): SharedLease<K, A> {
    const slot = item.slot
    item.leases++
    slot.leases++
    this.leases++
    item.lastUsed = now
    slot.lastUsed = now
    const heap = (slot.shared ??= new LeaseHeap())
    if (heap.has(item)) heap.update(item)
    else if (!closed) heap.push(item)
    const lease = new SharedLease(item, fiber, now, probe, closed)
    this.live.add(lease)
    return lease
  }

  /**
   * A shared lease's item passed validation: it takes other leases now, and
   * serves the key's waiters while it has room.
   */
  openShared(lease: SharedLease<K, A>): void {
    if (!lease.validating) return
    lease.validating = false
    const item = lease.item
    if (lease.done || item.state !== "leased" || this.unfit(item, this.now()) !== undefined) return
    const heap = (item.slot.shared ??= new LeaseHeap())
    if (!heap.has(item)) heap.push(item)
    this.serveShared(item.slot, this.now())
  }

  /** Hands the key's first waiters (FIFO) leases of its open items while any has room. */
  serveShared(slot: KeySlot<K, A>, now: number): void {
    let waiter: Waiter<K, A> | undefined
    while ((waiter = slot.waiters.head?.value) !== undefined) {
      const item = this.roomIn(slot, now)
      if (item === undefined) return
      this.dequeue(waiter)
      waiter.item = this.lendShared(item, now, waiter.fiber, waiter.probe, false)
      this.settleWaiter(waiter, "item")
    }
  }

  /**
   * An item stops taking new shared leases (invalidated, or broken by a
   * connection failure): its current leases finish, then it is destroyed.
   * The key's waiters may need another item now.
   */
  closeShare(item: Item<K, A>): void {
    item.slot.shared?.remove(item)
    this.creationEnded(item.slot)
  }

  /**
   * Marks a leased item broken: it is destroyed when its lease (or its last
   * shared lease) ends, and with shared leases it takes no new one from now.
   */
  markInvalid(item: Item<K, A>): void {
    item.invalid = "invalidated"
    if (this.shares) this.closeShare(item)
  }

  circuitOpen(slot: KeySlot<K, A>, retryAfter: number): PoolError {
    return this.io.errors.circuitOpen(slot.description, retryAfter, slot.breaker?.consecutive ?? 0)
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
      const breaker = s.breaker === undefined ? undefined : new Breaker(s.breaker)
      const tags = this.io.tagsFor(description)
      slot = new KeySlot<K, A>(id, key, description, max, fingerprint, now, breaker, tags)
      if (this.groups !== undefined) slot.group = this.groups.join(groupId!)
      this.slots.set(id, slot)
    } else if (fingerprint !== slot.fingerprint && !slot.retired?.includes(fingerprint)) {
      // Credentials changed: idle items of the old version go now, leased
      // ones when they come back (see `release`).
      slot.retired ??= []
      if (slot.retired.push(slot.fingerprint) > retiredFingerprints) slot.retired.shift()
      slot.fingerprint = fingerprint
      let stale: Item<K, A> | undefined
      while ((stale = slot.idle.head?.value) !== undefined) this.destroy(stale, "credentials")
    }
    slot.key = key
    this.lingering.delete(slot)
    return slot
  }

  /** Pops the most recently used idle item that is still fit to hand out. */
  takeIdle(slot: KeySlot<K, A>, now: number): Item<K, A> | undefined {
    let item: Item<K, A> | undefined
    while ((item = slot.idle.tail?.value) !== undefined) {
      const unfit = this.unfit(item, now)
      if (unfit === undefined) {
        this.fromIdle(item)
        return item
      }
      this.destroy(item, unfit)
    }
    return undefined
  }

  /** Why an item may not be handed out (again), if it may not (see `expiry.unfit`). */
  unfit(item: Item<K, A>, now: number): PoolMetrics.DestroyReason | undefined {
    return expiry.unfit(item, now, this.closed, this.settings.maxLifetime)
  }

  /** Whether the key itself may start another creation (its limit and `createConcurrency`). */
  mayGrow(slot: KeySlot<K, A>): boolean {
    return this.keyMayGrow(slot) && (slot.group === undefined || !slot.group.full)
  }

  /** Whether the key's own limit and `createConcurrency` allow another creation (its group's aside). */
  keyMayGrow(slot: KeySlot<K, A>): boolean {
    return slot.size < slot.max && slot.creating < this.settings.createConcurrency
  }

  canCreate(slot: KeySlot<K, A>): boolean {
    return this.mayGrow(slot) && this.size < this.settings.maxTotal
  }

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
      const victim = this.lru.head?.value
      if (victim !== undefined) this.destroy(victim, "evicted")
    }
  }

  lease(item: Item<K, A>, now: number, fiber: Holder): void {
    item.state = "leased"
    item.holder = fiber
    item.lastUsed = now
    item.slot.lastUsed = now
    item.slot.inUse++
    this.inUse++
  }

  reserve(slot: KeySlot<K, A>): void {
    slot.creating++
    this.creating++
    if (slot.group !== undefined) slot.group.size++
  }

  toIdle(item: Item<K, A>): void {
    item.slot.idle.push(item.keyLink)
    this.lru.push(item.lruLink)
    if (item.groupLink !== undefined) item.slot.group!.idle.push(item.groupLink)
  }

  fromIdle(item: Item<K, A>): void {
    item.slot.idle.remove(item.keyLink)
    this.lru.remove(item.lruLink)
    if (item.groupLink !== undefined) item.slot.group!.idle.remove(item.groupLink)
  }

  enqueue(slot: KeySlot<K, A>, key: K, fiber: Holder, since: number, probe: boolean): Waiter<K, A> {
    // Deadlines never decrease along the queue, so one timer for the oldest
    // serves all: a caller re-admitted after a failed validation (an earlier
    // `since`) may time out later by at most that validation's time.
    const deadline = Math.max(since + this.settings.acquireTimeout, this.waiters.tail?.value.deadline ?? 0)
    const waiter = new Waiter(slot, key, fiber, this.arrivals++, since, deadline, probe)
    slot.waiters.push(waiter.keyLink)
    this.waiters.push(waiter.poolLink)
    if (this.waiters.size === 1) this.io.waiting()
    return waiter
  }

  dequeue(waiter: Waiter<K, A>): void {
    waiter.slot.waiters.remove(waiter.keyLink)
    this.waiters.remove(waiter.poolLink)
    this.unpend(waiter)
  }

  /**
   * Makes an admitted caller wait for the creation it was granted: it queues
   * (FIFO, with its deadline) and its own fiber starts the creation.
   */
  enqueueCreator(slot: KeySlot<K, A>, key: K, fiber: Holder, since: number, probe: boolean): Waiter<K, A> {
    const waiter = this.enqueue(slot, key, fiber, since, probe)
    this.pend(waiter)
    return waiter
  }

  /** Grants a creation (its reservation already counted) to a waiter that stays queued. */
  grant(waiter: Waiter<K, A>): void {
    this.pend(waiter)
    this.io.wake(waiter)
  }

  pend(waiter: Waiter<K, A>): void {
    waiter.pending = true
    waiter.reserved = true
    waiter.slot.pending++
    this.pending++
  }

  unpend(waiter: Waiter<K, A>): void {
    if (!waiter.pending) return
    waiter.pending = false
    waiter.slot.pending--
    this.pending--
  }

  /**
   * Whether the waiters of `slot` need another item: always with exclusive
   * leases (a waiter without a creation of its own needs one); with shared
   * leases, only while they outnumber what the creations in flight will serve.
   */
  wantsItem(slot: KeySlot<K, A>): boolean {
    return !this.shares || needsItem(slot.waiters.size, slot.creating, this.maxLeases)
  }

  /** The first waiter of `slot` without a creation of its own. */
  firstBare(slot: KeySlot<K, A>): Waiter<K, A> | undefined {
    let link = slot.waiters.head
    if (slot.pending > 0) while (link?.value.pending) link = link.next
    return link?.value
  }

  // ---------------------------------------------------------------------------
  // dispatch: who gets a returned item or a freed slot
  // ---------------------------------------------------------------------------

  /**
   * The oldest waiter (of any key but `except`) whose key may still grow: the
   * one a freed total slot belongs to. Walks past waiters of keys at their own
   * limit, which only exist while the total is also exhausted.
   */
  oldestCreatable(except: KeySlot<K, A> | undefined): Waiter<K, A> | undefined {
    for (let link = this.waiters.head; link !== undefined; link = link.next) {
      const slot = link.value.slot
      if (slot !== except && !link.value.pending && this.mayGrow(slot) && this.wantsItem(slot)) return link.value
    }
    return undefined
  }

  /**
   * The oldest waiter of another key than `slot`'s that destroying an item of
   * `slot` would let create: its key may grow, and its group (if any) has
   * room once that item is gone. Walks waiters only while a total or group
   * limit is exhausted.
   */
  oldestUnblockedBy(slot: KeySlot<K, A>): Waiter<K, A> | undefined {
    for (let link = this.waiters.head; link !== undefined; link = link.next) {
      const other = link.value.slot
      if (other === slot || link.value.pending || !this.keyMayGrow(other) || !this.wantsItem(other)) continue
      const group = other.group
      if (group === undefined || group.size - (group === slot.group ? 1 : 0) < group.max) return link.value
    }
    return undefined
  }

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

  /** Whether a key of the pool has fewer than `minIdlePerKey` items idle, being checked or being created. */
  belowFloor(slot: KeySlot<K, A>): boolean {
    return (
      slot.idle.size + slot.checking + slot.creating < this.settings.minIdlePerKey &&
      !this.closed &&
      this.slots.get(slot.id) === slot
    )
  }

  /** Asks the end of the current step to start a refill of `slot` (one per key at a time). */
  scheduleRefill(slot: KeySlot<K, A>): void {
    if (slot.refilling) return
    slot.refilling = true
    this.decisions.push({ _tag: "Refill", slot })
  }

  fail(waiter: Waiter<K, A>, error: PoolError): void {
    waiter.error = error
    this.dequeue(waiter)
    this.settleWaiter(waiter, "failed")
  }

  settleWaiter(waiter: Waiter<K, A>, state: "item" | "failed"): void {
    waiter.state = state
    this.io.wake(waiter)
  }

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
    for (let link = this.lru.head; link !== undefined; link = link.next) {
      const slot = link.value.slot
      if (slot.inUse === 0 && slot.creating === 0 && slot.waiters.size === 0) {
        let item: Item<K, A> | undefined
        while ((item = slot.idle.head?.value) !== undefined) this.destroy(item, "evicted")
        // An evicted key goes even if it remembers failures or has a floor:
        // otherwise it would linger, still counted, and `maxKeys` be exceeded.
        if (this.slots.get(slot.id) === slot) this.drop(slot)
        return true
      }
    }
    return false
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
    item.slot.lastBroken = this.now()
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
    item.leases--
    slot.leases--
    this.leases--
    if (outcome === "connection") item.invalid ??= "invalidated"
    if (slot.breaker !== undefined) {
      if (outcome !== undefined) this.report(slot, outcome, lease.probe, now)
      else slot.breaker.abandon(lease.probe)
    }
    const unfit = this.unfit(item, now)
    switch (afterLease(item.leases, unfit === undefined)) {
      case "shared":
        if (unfit !== undefined) this.closeShare(item)
        else {
          slot.shared?.update(item)
          this.serveShared(slot, now)
        }
        break
      case "returned":
        slot.shared?.remove(item)
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

  /** Tells a key's breaker how a call went, failing the key's waiters if the circuit opens. */
  report(slot: KeySlot<K, A>, outcome: Outcome, probe: boolean, now: number): void {
    const breaker = slot.breaker
    if (breaker === undefined) return
    if (outcome === "connection") slot.lastFailure = now
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
      slot.leases -= item.leases
      this.leases -= item.leases
      item.leases = 0
      slot.shared?.remove(item)
    }
    item.state = "destroyed"
    item.holder = undefined
    slot.destroyed++
    this.destroyed++
    this.items.delete(item)
    this.decisions.push({ _tag: "Destroy", item, reason })
    this.freed(slot)
  }

  checkDrained(): void {
    if (this.closed && this.inUse === 0 && this.creating === 0 && this.closing === 0) this.io.drained()
  }

  /** An item's finalizer (started for a `Destroy` decision) finished. */
  finalized(): void {
    this.closing--
    this.checkDrained()
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

  /** Gives a reservation back (its creation was cancelled or failed): the freed slot goes on. */
  unreserve(slot: KeySlot<K, A>): void {
    slot.creating--
    this.creating--
    if (slot.group !== undefined) slot.group.size--
    this.checkDrained()
    this.freed(slot)
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
    slot.createFailures = 0
    slot.backoffUntil = 0
    const item = this.register(slot, value, handle, fingerprint, holder)
    item.probe = probe
    const now = this.now()
    this.io.update(slot.tags, "createDuration", (now - started) / 1000)
    if (since >= 0) this.io.update(slot.tags, "acquireWait", (now - since) / 1000)
    if (!this.shares) this.creationEnded(slot)
    return item
  }

  /**
   * A creation of `slot` Failed (or was interrupted: no verdict). A failure
   * fails the caller it was started for (`owner`) with `cause` if it still
   * waits, before a circuit that opens now fails the rest; it counts as a
   * connection failure whatever its error says, and backs the key's next
   * creation off. The reservation is given back either way, exactly once.
   */
  createFailed(
    slot: KeySlot<K, A>,
    owner: Waiter<K, A> | undefined,
    probe: boolean,
    interrupted: boolean,
    cause: unknown
  ): void {
    const now = this.now()
    if (interrupted) {
      slot.breaker?.abandon(probe)
    } else {
      if (owner !== undefined && owner.state === "waiting" && owner.pending) {
        owner.cause = cause
        this.dequeue(owner)
        this.settleWaiter(owner, "failed")
      }
      slot.failures++
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

  /** Fails the waiters whose deadline passed with `PoolTimeout`, oldest first (deadlines follow arrival). */
  expire(now: number): void {
    let waiter: Waiter<K, A> | undefined
    while ((waiter = this.waiters.head?.value) !== undefined && waiter.deadline <= now) {
      waiter.slot.timeouts++
      this.timeouts++
      this.io.update(waiter.slot.tags, "acquireTimeouts", 1)
      this.fail(waiter, this.timeoutError(waiter.slot, waiter.key, waiter.since))
      this.dropIfEmpty(waiter.slot)
    }
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
    for (let link = this.lru.head; link !== undefined; ) {
      const item = link.value
      link = link.next
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

  /** Closes the pool: refuses new callers, fails waiters with `PoolClosed`, destroys idle items. */
  close(): void {
    this.closed = true
    let waiter: Waiter<K, A> | undefined
    while ((waiter = this.waiters.head?.value) !== undefined) {
      this.fail(waiter, this.io.errors.closed(waiter.slot.description))
      this.dropIfEmpty(waiter.slot)
    }
    let idle: Item<K, A> | undefined
    while ((idle = this.lru.head?.value) !== undefined) this.destroy(idle, "shutdown")
  }

  /**
   * At shutdown's drain timeout: destroys the items still leased and returns
   * the holders of leases, for the shell to interrupt.
   */
  takeBackLeased(): Set<Holder> {
    const holders = new Set<Holder>()
    for (const lease of this.live) holders.add(lease.holder)
    for (const item of Array.from(this.items)) {
      if (item.state !== "leased") continue
      if (item.holder !== undefined) holders.add(item.holder)
      this.destroy(item, "shutdown")
    }
    return holders
  }

  /** After a failed creation, the key's next one waits: doubling per failure, capped, with jitter. */
  backOff(slot: KeySlot<K, A>, now: number): void {
    const backoff = this.settings.createBackoff
    if (backoff === undefined) return
    const delay = backoffDelay(backoff, slot.createFailures, this.random())
    slot.createFailures++
    slot.backoffUntil = now + delay
  }

  register(slot: KeySlot<K, A>, value: A, handle: unknown, fingerprint: string | undefined, fiber: Holder): Item<K, A> {
    const now = this.now()
    const item = new Item(slot, value, handle, fingerprint, now)
    slot.creating--
    this.creating--
    slot.created++
    this.created++
    this.io.update(slot.tags, "created", 1)
    this.items.add(item)
    this.lease(item, now, fiber)
    return item
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

  // ---------------------------------------------------------------------------
  // snapshots
  // ---------------------------------------------------------------------------

  occupancy(): Occupancy {
    return snapshot.occupancy(this)
  }

  timeoutError(slot: KeySlot<K, A>, key: K, since: number): PoolTimeout {
    const s = this.settings
    return this.io.errors.timeout({
      key: s.describeKey(key),
      waitedMillis: this.now() - since,
      limits: {
        maxPerKey: slot.max,
        maxTotal: Number.isFinite(s.maxTotal) ? s.maxTotal : null,
        acquireTimeoutMillis: Number.isFinite(s.acquireTimeout) ? s.acquireTimeout : null
      },
      keySnapshot: snapshot.keyOccupancy(slot),
      poolSnapshot: this.occupancy()
    })
  }

  itemDetails(): Array<ItemDetails> {
    return snapshot.itemDetails(this.items, this.now(), this.shares)
  }
}
