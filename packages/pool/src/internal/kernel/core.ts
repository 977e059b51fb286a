/**
 * The kernel's state: per-key slots (through the injected `SlotIndex`), the
 * idle LRU, the waiter queue, the counters and the decision buffer, with the
 * small rules every behaviour shares (limits, counting an item in or out of
 * idle, fitness). Each behaviour is a layer over it, one module each, in
 * this order: `waiting` → `sharing` → `keys` → `creation` → `release` →
 * `checks` → `admission` → `shutdown` → `kernel`. A layer calls the ones below it
 * directly, and the few rules of a later layer that earlier ones need
 * through the abstract methods declared here, so modules import only
 * downwards (no cycle). Nothing here imports `effect` at run time.
 *
 * @internal
 */
import type { KeyLimitExceeded, Occupancy, PoolError, PoolTimeout } from "../../PoolError.js"
import type * as PoolMetrics from "../../PoolMetrics.js"
import type { ItemDetails, KeyStats } from "../../PoolStats.js"
import type { Tags } from "../metrics.js"
import type { Resolved } from "../settings.js"
import type { Outcome } from "./breaker.js"
import type { Decision } from "./decisions.js"
import * as expiry from "./expiry.js"
import { Groups } from "./groups.js"
import { ItemIndex } from "./itemIndex.js"
import { needsItem } from "./leases.js"
import { LinkedList } from "./linkedList.js"
import { type Holder, type Item, type KeySlot, Lru, type SharedLease, type Waiter } from "./model.js"
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

/** The kernel's state and shared rules; behaviours are layered over it (see the module's doc). */
export abstract class Core<K, A> {
  // Rules of later layers that earlier ones need (see the module's doc).
  /** Takes an item out of the pool and frees its slot (`release.ts`). */
  abstract destroy(item: Item<K, A>, reason: PoolMetrics.DestroyReason): void
  /** A slot of `slot`'s key (and of the total) was freed (`release.ts`). */
  abstract freed(slot: KeySlot<K, A>): void
  /** Tells a key's breaker how a call went (`release.ts`). */
  abstract report(slot: KeySlot<K, A>, outcome: Outcome, probe: boolean, now: number): void
  /** Ends an exclusive lease, with the breaker's verdict on it if it gives one (`release.ts`). */
  abstract endExclusive(item: Item<K, A>, outcome: Outcome | undefined): void
  /** A creation of `slot` ended (either way): its key may start the next one (`creation.ts`). */
  abstract creationEnded(slot: KeySlot<K, A>): void
  /** Drops a key left empty, or keeps it while it remembers failures (`keys.ts`). */
  abstract dropIfEmpty(slot: KeySlot<K, A>): void

  constructor(
    readonly settings: Resolved<K>,
    readonly slots: SlotIndex<KeySlot<K, A>>,
    readonly io: KernelIO
  ) {
    this.maxLeases = settings.maxLeasesPerItem
    this.shares = settings.maxLeasesPerItem > 1
    this.groups = settings.group === undefined ? undefined : new Groups(settings.maxPerGroup)
    this.origin = io.now()
  }

  /**
   * The time the kernel's clock counts from (the port's time when the pool
   * started): the kernel's times are milliseconds since then, small integers
   * V8 stores in a field without a heap number for each (for 24 days; then
   * they are heap numbers, and still right). Times that leave the kernel
   * (stats, history, item details) add it back.
   */
  readonly origin: number

  /** Tenants' groups of keys, in a pool given `group`. */
  readonly groups: Groups<Item<K, A>> | undefined

  /** The backoff jitter's source: `Math.random` (it needs no reproducible seed); a kernel test injects its own. */
  random: () => number = Math.random

  /** What the steps since the last call decided, for the shell to perform (see `Decision`). */
  takeDecisions(): Array<Decision<KeySlot<K, A>, Item<K, A>>> | undefined {
    if (this.decisions.length === 0) return undefined
    const decisions = this.decisions
    this.decisions = []
    return decisions
  }

  /** Idle items of every key, least recently released at the head. */
  readonly lru = new Lru<K, A>()
  /** Every waiter, oldest first: serves cross-key fairness and deadline expiry. */
  readonly waiters = new LinkedList<Waiter<K, A>>()
  /** Waiters with a creation of their own in flight (see `Waiter.pending`). */
  pending = 0
  /** Live items, each by its own identity (values may be equal), found by value for O(1) `invalidate`. */
  readonly items = new ItemIndex<Item<K, A>, A>()
  /**
   * What the current step decided that whoever runs the step performs when it
   * ends (see `takeDecisions`): items to close, refills to start, log lines.
   * (Wakes go through `KernelIO.wake` in the step: see `decisions.ts`.)
   */
  decisions: Array<Decision<KeySlot<K, A>, Item<K, A>>> = []
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

  /**
   * The time, in whole milliseconds since `origin` (the kernel's clock, which
   * the shell reads too). Whole: a difference of two epoch times is a heap
   * number even when it is an integer, and one stored in a field makes V8
   * box that field in every item; `Math.floor` hands back a small integer.
   */
  now(): number {
    return Math.floor(this.io.now() - this.origin)
  }

  circuitOpen(slot: KeySlot<K, A>, retryAfter: number): PoolError {
    return this.io.errors.circuitOpen(slot.description, retryAfter, slot.breaker?.consecutive ?? 0)
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
    item.slot.idle.push(item)
    this.lru.push(item)
    const group = item.rare?.groupLink
    if (group !== undefined) item.slot.group!.idle.push(group)
  }

  fromIdle(item: Item<K, A>): void {
    item.slot.idle.remove(item)
    this.lru.remove(item)
    const group = item.rare?.groupLink
    if (group !== undefined) item.slot.group!.idle.remove(group)
  }

  /** Counts an item taken out of idle as in use, held by no caller yet. */
  claim(item: Item<K, A>): void {
    item.state = "leased"
    item.holder = undefined
    item.slot.inUse++
    this.inUse++
  }

  /**
   * Whether the waiters of `slot` need another item: always with exclusive
   * leases (a waiter without a creation of its own needs one); with shared
   * leases, only while they outnumber what the creations in flight will serve.
   */
  wantsItem(slot: KeySlot<K, A>): boolean {
    return !this.shares || needsItem(slot.waiters.size, slot.creating, this.maxLeases)
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
    slot.extras().refilling = true
    this.decisions.push({ _tag: "Refill", slot })
  }

  checkDrained(): void {
    if (this.closed && this.inUse === 0 && this.creating === 0 && this.closing === 0) this.io.drained()
  }

  /** An item's finalizer (started for a `Destroy` decision) finished. */
  finalized(): void {
    this.closing--
    this.checkDrained()
  }

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

  /** One key's stats at `now` (the kernel's clock), its times as epoch milliseconds. */
  keyStats(slot: KeySlot<K, A>, now: number, maxLeases: number | undefined): KeyStats {
    return snapshot.keyStats(slot, now, maxLeases, this.origin)
  }

  itemDetails(): Array<ItemDetails> {
    return snapshot.itemDetails(this.items, this.now(), this.shares, this.origin)
  }
}
