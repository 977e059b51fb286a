import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import {
  CheckTimeout,
  CircuitOpen,
  CreateTimeout,
  KeyLimitExceeded,
  type Occupancy,
  PoolClosed,
  type PoolError,
  PoolTimeout
} from "../PoolError.js"
import * as PoolMetrics from "../PoolMetrics.js"
import type { CheckResult, CleanupReport, ItemDetails, KeyStats, PoolStats } from "../PoolStats.js"
import { Breaker, type Outcome, PASS, PROBE } from "./kernel/breaker.js"
import { backoffDelay } from "./kernel/creation.js"
import type { Decision, Log } from "./kernel/decisions.js"
import * as expiry from "./kernel/expiry.js"
import { type Group, Groups } from "./kernel/groups.js"
import { ItemIndex } from "./kernel/itemIndex.js"
import { afterLease, LeaseHeap, needsItem, withRoom } from "./kernel/leases.js"
import { Link, LinkedList } from "./kernel/linkedList.js"
import * as snapshot from "./kernel/snapshot.js"
import { KeyIndex } from "./keyIndex.js"
import { PoolTags, sample, sampleGroup, type Tags } from "./metrics.js"
import { configInForce, type Maintenance, type Resolved } from "./settings.js"

/**
 * The keyed pool's state machine: per-key slots, items, waiters, and every
 * rule of admission, dispatch, release, expiry, health and shutdown.
 * `keyedPool.ts` wraps it in the public object.
 *
 * @internal
 */

/** @internal */
export type AnyFiber = Fiber.RuntimeFiber<unknown, unknown>

/**
 * One pooled resource. `scope` holds the finalizers its `acquire` added;
 * closing it destroys the resource.
 *
 * @internal
 */
export class Item<K, A> {
  state: "idle" | "leased" | "destroyed" = "leased"
  /** Set on a leased item found broken: destroy it instead of returning it, for this reason. */
  invalid: PoolMetrics.DestroyReason | undefined
  /** The lease is a half-open circuit's probe: its outcome decides the circuit. */
  probe = false
  holder: AnyFiber | undefined
  lastUsed: number
  idleSince = 0
  /** Callers' shared leases on it right now (only with `maxLeasesPerItem` above 1; see `leases.ts`). */
  leases = 0
  /** Its place in its key's `LeaseHeap` while it takes new shared leases, else -1. */
  heapIndex = -1
  /** Membership in its key's idle stack. */
  readonly keyLink = new Link<Item<K, A>>(this)
  /** Membership in the pool-wide idle list, least recently released first. */
  readonly lruLink = new Link<Item<K, A>>(this)
  /** Membership in its group's idle list (only in a pool with groups). */
  readonly groupLink: Link<Item<K, A>> | undefined
  /** Built once per item, so a lease allocates no closure for its release. */
  readonly release: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>

  constructor(
    readonly slot: KeySlot<K, A>,
    readonly value: A,
    readonly scope: Scope.CloseableScope,
    readonly fingerprint: string | undefined,
    readonly createdAt: number,
    pool: PoolState<K, A, any>
  ) {
    this.lastUsed = createdAt
    this.groupLink = slot.group === undefined ? undefined : new Link<Item<K, A>>(this)
    this.release = (exit) => Effect.suspend(() => pool.release(this, exit))
  }
}

/**
 * One caller's lease of an item that up to `maxLeasesPerItem` callers hold at
 * once. With exclusive leases the item is its own lease and none of these is
 * made. Ends exactly once (`done`), whatever ends it.
 *
 * @internal
 */
export class SharedLease<K, A> {
  done = false
  /** Made while the item is validated (taken from idle): it takes no other lease until it passes. */
  validating: boolean
  readonly value: A
  /** Built once per lease: the finalizer a scoped `get` adds. */
  readonly release: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>

  constructor(
    readonly item: Item<K, A>,
    readonly holder: AnyFiber,
    readonly since: number,
    /** The lease is a half-open circuit's probe: its outcome decides the circuit. */
    public probe: boolean,
    validating: boolean,
    pool: PoolState<K, A, any>
  ) {
    this.value = item.value
    this.validating = validating
    this.release = (exit) => Effect.suspend(() => pool.release(this, exit))
  }
}

/**
 * What a caller holds: the item itself (exclusive leases) or one of its
 * shared leases.
 *
 * @internal
 */
export type Lease<K, A> = Item<K, A> | SharedLease<K, A>

/** The item a lease is of. */
export const itemOf = <K, A>(lease: Lease<K, A>): Item<K, A> => (lease instanceof SharedLease ? lease.item : lease)

/**
 * A caller waiting for its turn. Whoever serves it writes the outcome here
 * before waking it, so the caller's own fiber settles ownership whatever
 * happened meanwhile (interruption, timeout, shutdown): nothing is lost.
 *
 * @internal
 */
export class Waiter<K, A> {
  state: "waiting" | "item" | "failed" | "settled" = "waiting"
  item: Lease<K, A> | undefined
  /** Why it failed: built when it happened, while the waiter still counts in the snapshot. */
  error: PoolError | undefined
  /** Or the cause its own creation failed with (the resource's error, or a defect). */
  cause: Cause.Cause<unknown> | undefined
  /**
   * A creation was granted to it and is not over: it stays in the queue, with
   * its deadline, while the creation runs on a fiber of its own (see
   * `PoolState.spawn`). It is not counted as waiting, and no other creation is
   * granted to it meanwhile.
   */
  pending = false
  /** The granted creation is not started yet: the waiter's own fiber starts it (see `PoolState.settle`). */
  reserved = false
  wake: ((effect: Effect.Effect<void>) => void) | undefined
  readonly keyLink = new Link<Waiter<K, A>>(this)
  readonly poolLink = new Link<Waiter<K, A>>(this)

  constructor(
    readonly slot: KeySlot<K, A>,
    readonly key: K,
    readonly fiber: AnyFiber,
    /** Arrival order across the whole pool. */
    readonly seq: number,
    readonly since: number,
    readonly deadline: number,
    /** A half-open circuit's probe; a creation started for it takes the probe over. */
    public probe: boolean
  ) {}
}

/**
 * Everything the pool knows about one key (one `keyId` group).
 *
 * @internal
 */
export class KeySlot<K, A> {
  readonly idle = new LinkedList<Item<K, A>>()
  readonly waiters = new LinkedList<Waiter<K, A>>()
  /** Waiters of this key with a creation of their own in flight (see `Waiter.pending`). */
  pending = 0
  inUse = 0
  creating = 0
  created = 0
  destroyed = 0
  timeouts = 0
  failures = 0
  lastUsed: number
  /** Fingerprints this key moved past: a late caller holding one does not move it back. */
  retired: Array<string | undefined> | undefined
  /** Items leased to a health check or heartbeat (a subset of `inUse`). */
  checking = 0
  /** Failed creations in a row, and when the next creation may start. */
  createFailures = 0
  backoffUntil = 0
  /** When the breaker last counted a failure, and when an item last failed a check or validation. */
  lastFailure = 0
  lastBroken = Number.NEGATIVE_INFINITY
  /** Recent check, heartbeat and failed validation results, oldest first (made on the first). */
  history: Array<CheckResult> | undefined
  /** A background refill of this key runs (see `PoolState.refill`): one at a time. */
  refilling = false
  /** Its tenant's group, in a pool with `group` (see `groups.ts`). */
  group: Group<Item<K, A>> | undefined
  /** Leased items that take more shared leases (made on the first shared lease; see `leases.ts`). */
  shared: LeaseHeap<Item<K, A>> | undefined
  /** Callers' shared leases on its items right now. */
  leases = 0

  constructor(
    readonly id: unknown,
    /** The latest key seen: background refills create with it. */
    public key: K,
    readonly description: string,
    readonly max: number,
    public fingerprint: string | undefined,
    readonly createdAt: number,
    readonly breaker: Breaker | undefined,
    /** Metric labels: this key's own, or shared with other keys. */
    readonly tags: Tags
  ) {
    this.lastUsed = createdAt
  }

  get size(): number {
    return this.idle.size + this.inUse + this.creating
  }
}

/** How many past fingerprints a key remembers (see `KeySlot.retired`). */
const retiredFingerprints = 8

/** @internal */
export const annotations = { package: "@cistern/pool", module: "KeyedPool" } as const

/**
 * The engine. All bookkeeping is synchronous and runs inside a single
 * `Effect.sync`/`suspend` step, so each state change is atomic with respect to
 * other fibers without locks; only resource creation and destruction (the
 * user's effects) run asynchronously.
 *
 * @internal
 */
export class PoolState<K, A, E> {
  readonly slots = new KeyIndex<unknown, KeySlot<K, A>>()
  /** Idle items of every key, least recently released at the head. */
  readonly lru = new LinkedList<Item<K, A>>()
  /** Every waiter, oldest first: serves cross-key fairness and deadline expiry. */
  readonly waiters = new LinkedList<Waiter<K, A>>()
  /** Waiters with a creation of their own in flight (see `Waiter.pending`). */
  pending = 0
  /** Live items, each by its own identity (values may be equal), found by value for O(1) `invalidate`. */
  readonly items = new ItemIndex<Item<K, A>, A>()
  /** Fibers running a creation, interrupted if shutdown outlasts `drainTimeout`. */
  readonly creators = new Set<AnyFiber>()
  /**
   * What the current step decided that whoever runs the step performs when it
   * ends (see `flush`): items to close, refills to start, log lines. (Wakes
   * and creations are still performed in place: see `KERNEL-PLAN.md`.)
   */
  private decisions: Array<Decision<KeySlot<K, A>, Item<K, A>, Waiter<K, A>>> = []
  /** Items whose finalizers are running, each on a fiber of its own (see `closeAll`). */
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
  readonly tags: PoolTags
  private arrivals = 0
  /** The key being admitted: kept even if it empties for a moment mid-step. */
  private pinned: KeySlot<K, A> | undefined

  /** Wakes the deadline fiber when the first waiter arrives. */
  private wakeDeadlines: ((effect: Effect.Effect<void>) => void) | undefined

  constructor(
    readonly settings: Resolved<K>,
    /** Runs the user's `acquire` with the pool's context and the item's own scope. */
    readonly acquire: (key: K, scope: Scope.Scope) => Effect.Effect<A, E>,
    readonly clock: Clock.Clock,
    readonly drained: Deferred.Deferred<void>,
    /** The pool's scope: background refills run in it. */
    readonly scope: Scope.Scope,
    /** Runs items' finalizers on fibers of their own, outside any caller's (see `closeAll`). */
    readonly runtime: Runtime.Runtime<never>
  ) {
    this.tags = new PoolTags(settings.name, settings.metricsPerKey)
    this.maxLeases = settings.maxLeasesPerItem
    this.shares = settings.maxLeasesPerItem > 1
    this.groups = settings.group === undefined ? undefined : new Groups(settings.maxPerGroup)
    this.groupTags =
      settings.group === undefined || settings.metricsPerKey === 0
        ? undefined
        : new PoolTags(settings.name, settings.metricsPerKey, "group")
  }

  /** Metric labels of tenant groups, capped like keys' (`metricsPerKey`). */
  private readonly groupTags: PoolTags | undefined

  /** Tenants' groups of keys, in a pool given `group`. */
  readonly groups: Groups<Item<K, A>> | undefined

  /** The backoff jitter's source: `Math.random` (it needs no reproducible seed); a kernel test injects its own. */
  readonly random: () => number = Math.random

  /** Idle items: exactly the members of the idle LRU. */
  get idle(): number {
    return this.lru.size
  }

  get size(): number {
    return this.idle + this.inUse + this.creating
  }

  now(): number {
    return this.clock.unsafeCurrentTimeMillis()
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
  admit(key: K, fiber: AnyFiber, since: number): Lease<K, A> | Waiter<K, A> | PoolError {
    if (this.closed) return new PoolClosed({ key: this.settings.describeKey(key) })
    const now = this.now()
    const slot = this.slotFor(key, now)
    if (!(slot instanceof KeySlot)) return slot
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
  private admitShared(
    slot: KeySlot<K, A>,
    key: K,
    fiber: AnyFiber,
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
  private roomIn(slot: KeySlot<K, A>, now: number): Item<K, A> | undefined {
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
  private claim(item: Item<K, A>): void {
    item.state = "leased"
    item.holder = undefined
    item.slot.inUse++
    this.inUse++
  }

  /**
   * Adds a shared lease of a leased `item` for `fiber`. Unless `closed` (it
   * is being validated), the item takes more leases while it has room.
   */
  private lendShared(
    item: Item<K, A>,
    now: number,
    fiber: AnyFiber,
    probe: boolean,
    closed: boolean
  ): SharedLease<K, A> {
    const slot = item.slot
    item.leases++
    slot.leases++
    this.leases++
    item.lastUsed = now
    slot.lastUsed = now
    const heap = (slot.shared ??= new LeaseHeap())
    if (heap.has(item)) heap.update(item)
    else if (!closed) heap.push(item)
    const lease = new SharedLease(item, fiber, now, probe, closed, this)
    this.live.add(lease)
    return lease
  }

  /**
   * A shared lease's item passed validation: it takes other leases now, and
   * serves the key's waiters while it has room.
   */
  open(lease: SharedLease<K, A>): Effect.Effect<void> {
    if (!lease.validating) return Effect.void
    lease.validating = false
    const item = lease.item
    if (lease.done || item.state !== "leased" || this.unfit(item, this.now()) !== undefined) return Effect.void
    const heap = (item.slot.shared ??= new LeaseHeap())
    if (!heap.has(item)) heap.push(item)
    this.serveShared(item.slot, this.now())
    return this.flush()
  }

  /** Hands the key's first waiters (FIFO) leases of its open items while any has room. */
  private serveShared(slot: KeySlot<K, A>, now: number): void {
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
  private closeShare(item: Item<K, A>): void {
    item.slot.shared?.remove(item)
    this.creationEnded(item.slot)
  }

  /**
   * Marks a leased item broken: it is destroyed when its lease (or its last
   * shared lease) ends, and with shared leases it takes no new one from now.
   */
  invalidateLeased(item: Item<K, A>): Effect.Effect<void> {
    item.invalid = "invalidated"
    if (!this.shares) return Effect.void
    this.closeShare(item)
    return this.flush()
  }

  private circuitOpen(slot: KeySlot<K, A>, retryAfter: number): CircuitOpen {
    return new CircuitOpen({
      key: slot.description,
      retryAfterMillis: retryAfter,
      consecutiveFailures: slot.breaker?.consecutive ?? 0
    })
  }

  private slotFor(key: K, now: number): KeySlot<K, A> | KeyLimitExceeded {
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
        return new KeyLimitExceeded({ key: description, maxKeys: s.maxKeys, poolSnapshot: this.occupancy() })
      }
      const breaker = s.breaker === undefined ? undefined : new Breaker(s.breaker)
      const tags = this.tags.forKey(description)
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
  private takeIdle(slot: KeySlot<K, A>, now: number): Item<K, A> | undefined {
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
  private unfit(item: Item<K, A>, now: number): PoolMetrics.DestroyReason | undefined {
    return expiry.unfit(item, now, this.closed, this.settings.maxLifetime)
  }

  /** Whether the key itself may start another creation (its limit and `createConcurrency`). */
  private mayGrow(slot: KeySlot<K, A>): boolean {
    return this.keyMayGrow(slot) && (slot.group === undefined || !slot.group.full)
  }

  /** Whether the key's own limit and `createConcurrency` allow another creation (its group's aside). */
  private keyMayGrow(slot: KeySlot<K, A>): boolean {
    return slot.size < slot.max && slot.creating < this.settings.createConcurrency
  }

  private canCreate(slot: KeySlot<K, A>): boolean {
    return this.mayGrow(slot) && this.size < this.settings.maxTotal
  }

  /**
   * When only the total stands between `slot` and a creation, makes room by
   * destroying the least recently used idle item (of another key: a key with
   * idle items has no waiters, and a caller takes its own key's idle item
   * first). Runs wherever a creation may be granted: on admission and when a
   * creation ends (a waiter held back by `createConcurrency`).
   */
  private makeRoom(slot: KeySlot<K, A>): void {
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

  private lease(item: Item<K, A>, now: number, fiber: AnyFiber): void {
    item.state = "leased"
    item.holder = fiber
    item.lastUsed = now
    item.slot.lastUsed = now
    item.slot.inUse++
    this.inUse++
  }

  private reserve(slot: KeySlot<K, A>): void {
    slot.creating++
    this.creating++
    if (slot.group !== undefined) slot.group.size++
  }

  private toIdle(item: Item<K, A>): void {
    item.slot.idle.push(item.keyLink)
    this.lru.push(item.lruLink)
    if (item.groupLink !== undefined) item.slot.group!.idle.push(item.groupLink)
  }

  private fromIdle(item: Item<K, A>): void {
    item.slot.idle.remove(item.keyLink)
    this.lru.remove(item.lruLink)
    if (item.groupLink !== undefined) item.slot.group!.idle.remove(item.groupLink)
  }

  private enqueue(slot: KeySlot<K, A>, key: K, fiber: AnyFiber, since: number, probe: boolean): Waiter<K, A> {
    // Deadlines never decrease along the queue, so one timer for the oldest
    // serves all: a caller re-admitted after a failed validation (an earlier
    // `since`) may time out later by at most that validation's time.
    const deadline = Math.max(since + this.settings.acquireTimeout, this.waiters.tail?.value.deadline ?? 0)
    const waiter = new Waiter(slot, key, fiber, this.arrivals++, since, deadline, probe)
    slot.waiters.push(waiter.keyLink)
    this.waiters.push(waiter.poolLink)
    if (this.waiters.size === 1 && this.wakeDeadlines !== undefined) {
      const wake = this.wakeDeadlines
      this.wakeDeadlines = undefined
      wake(Effect.void)
    }
    return waiter
  }

  private dequeue(waiter: Waiter<K, A>): void {
    waiter.slot.waiters.remove(waiter.keyLink)
    this.waiters.remove(waiter.poolLink)
    this.unpend(waiter)
  }

  /**
   * Makes an admitted caller wait for the creation it was granted: it queues
   * (FIFO, with its deadline) and its own fiber starts the creation.
   */
  private enqueueCreator(slot: KeySlot<K, A>, key: K, fiber: AnyFiber, since: number, probe: boolean): Waiter<K, A> {
    const waiter = this.enqueue(slot, key, fiber, since, probe)
    this.pend(waiter)
    return waiter
  }

  /** Grants a creation (its reservation already counted) to a waiter that stays queued. */
  private grant(waiter: Waiter<K, A>): void {
    this.pend(waiter)
    const wake = waiter.wake
    if (wake !== undefined) {
      waiter.wake = undefined
      wake(Effect.void)
    }
  }

  private pend(waiter: Waiter<K, A>): void {
    waiter.pending = true
    waiter.reserved = true
    waiter.slot.pending++
    this.pending++
  }

  private unpend(waiter: Waiter<K, A>): void {
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
  private wantsItem(slot: KeySlot<K, A>): boolean {
    return !this.shares || needsItem(slot.waiters.size, slot.creating, this.maxLeases)
  }

  /** The first waiter of `slot` without a creation of its own. */
  private firstBare(slot: KeySlot<K, A>): Waiter<K, A> | undefined {
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
  private oldestCreatable(except: KeySlot<K, A> | undefined): Waiter<K, A> | undefined {
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
  private oldestUnblockedBy(slot: KeySlot<K, A>): Waiter<K, A> | undefined {
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
  private returned(item: Item<K, A>, now: number): void {
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
  private freed(slot: KeySlot<K, A>): void {
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
  private creationEnded(slot: KeySlot<K, A>): void {
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
  private belowFloor(slot: KeySlot<K, A>): boolean {
    return (
      slot.idle.size + slot.checking + slot.creating < this.settings.minIdlePerKey &&
      !this.closed &&
      this.slots.get(slot.id) === slot
    )
  }

  /** Asks the end of the current step to start a refill of `slot` (one per key at a time). */
  private scheduleRefill(slot: KeySlot<K, A>): void {
    if (slot.refilling) return
    slot.refilling = true
    this.decisions.push({ _tag: "Refill", slot })
  }

  private fail(waiter: Waiter<K, A>, error: PoolError): void {
    waiter.error = error
    this.dequeue(waiter)
    this.settleWaiter(waiter, "failed")
  }

  private settleWaiter(waiter: Waiter<K, A>, state: "item" | "failed"): void {
    waiter.state = state
    const wake = waiter.wake
    if (wake !== undefined) {
      waiter.wake = undefined
      wake(Effect.void)
    }
  }

  private dropIfEmpty(slot: KeySlot<K, A>): void {
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
  private remembersFailures(slot: KeySlot<K, A>, now: number): boolean {
    return expiry.remembersFailures(slot, now, this.settings.cleanupInterval)
  }

  private drop(slot: KeySlot<K, A>): void {
    if (slot.group !== undefined) this.groups?.leave(slot.group)
    this.slots.delete(slot.id)
    this.lingering.delete(slot)
    this.keysDropped++
  }

  /** Evicts a key kept only for its failures, or else one whose items are all idle, least recently used first. */
  private evictIdleKey(): boolean {
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

  // ---------------------------------------------------------------------------
  // release and destruction
  // ---------------------------------------------------------------------------

  /**
   * Ends a caller's lease: the item goes back, or is destroyed when unfit or
   * when the lease failed with a connection error. The outcome feeds the
   * breaker.
   */
  release(lease: Lease<K, A>, exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> {
    if (lease instanceof SharedLease) {
      return lease.done
        ? Effect.void
        : this.endShared(lease, Exit.isSuccess(exit) ? "success" : this.classify(exit.cause))
    }
    if (lease.state !== "leased") return Effect.void
    return this.end(lease, Exit.isSuccess(exit) ? "success" : this.classify(exit.cause))
  }

  /**
   * Puts back an item whose lease gives the breaker no verdict: one the pool
   * held itself (a check, a pre-warm), or a caller's that was interrupted
   * before using it. A probe's place is given up, so the next caller probes.
   */
  giveBack(lease: Lease<K, A>): Effect.Effect<void> {
    return lease instanceof SharedLease ? this.endShared(lease, undefined) : this.end(lease, undefined)
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
    const item = itemOf(lease)
    item.invalid = "failed_check"
    item.slot.lastBroken = this.now()
    return this.giveBack(lease)
  }

  /**
   * Ends one shared lease. A connection failure marks the item broken for
   * everyone: it takes no new lease, its other holders finish (or fail) on
   * their own, and the last one out destroys it. An item with leases left
   * takes new ones again (if fit) and serves the key's first waiter; after
   * its last lease it goes back like an exclusive lease (to waiters or idle)
   * or is destroyed (see `afterLease`).
   */
  private endShared(lease: SharedLease<K, A>, outcome: Outcome | undefined): Effect.Effect<void> {
    if (lease.done) return Effect.void
    lease.done = true
    this.live.delete(lease)
    const item = lease.item
    // Destroyed meanwhile (shutdown's drain timeout): its counts went with it.
    if (item.state !== "leased") return Effect.void
    const now = this.now()
    const slot = item.slot
    slot.lastUsed = now
    item.lastUsed = now
    slot.tags.update(PoolMetrics.leaseDuration, (now - lease.since) / 1000)
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
    return this.flush()
  }

  /** Ends a lease with the breaker's verdict on it, if it gives one. */
  private end(item: Item<K, A>, outcome: Outcome | undefined): Effect.Effect<void> {
    if (item.state !== "leased") return Effect.void
    const now = this.now()
    const slot = item.slot
    slot.lastUsed = now
    if (item.holder !== undefined) slot.tags.update(PoolMetrics.leaseDuration, (now - item.lastUsed) / 1000)
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
    return this.flush()
  }

  /** Whether a failure is the connection's fault, the caller's, or an interruption. */
  classify(cause: Cause.Cause<unknown>): Outcome {
    if (Cause.isInterruptedOnly(cause)) return "interrupted"
    const failure = Cause.failureOption(cause)
    const error = failure._tag === "Some" ? failure.value : Cause.squash(cause)
    return this.settings.isConnectionError(error) ? "connection" : "caller"
  }

  /** Tells a key's breaker how a call went, failing the key's waiters if the circuit opens. */
  report(slot: KeySlot<K, A>, outcome: Outcome, probe: boolean, now: number): void {
    const breaker = slot.breaker
    if (breaker === undefined) return
    if (outcome === "connection") slot.lastFailure = now
    const before = breaker.tell(outcome, now, probe)
    if (before !== undefined) {
      slot.tags.update(PoolMetrics.breakerTransitions, 1, slot.tags.with("to", breaker.state))
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
   * whoever runs the current step (see `flush`).
   */
  destroy(item: Item<K, A>, reason: PoolMetrics.DestroyReason): void {
    const slot = item.slot
    if (item.state === "destroyed") return
    slot.tags.update(PoolMetrics.destroyed, 1, slot.tags.with("reason", reason))
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

  /**
   * Finishes a step: performs what it decided, in this order whatever order
   * it decided it in: writes its log lines, starts closing the items it
   * destroyed and starts the refills it asked for.
   */
  flush(): Effect.Effect<void> {
    if (this.decisions.length === 0) return Effect.void
    const decisions = this.decisions
    this.decisions = []
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

  private readonly closedOne = Effect.sync(() => {
    this.closing--
    this.checkDrained()
  })

  private checkDrained(): void {
    if (this.closed && this.inUse === 0 && this.creating === 0 && this.closing === 0) {
      Deferred.unsafeDone(this.drained, Exit.void)
    }
  }

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
    return Effect.flatMap(Effect.exit(restore(this.park(waiter))), (exit) => this.settle(waiter, exit, restore))
  }

  /**
   * After parking ended (served, timed out, closed or interrupted), settles
   * what the waiter owns: an item or a reservation is used, or given back when
   * the caller was interrupted.
   */
  settle(waiter: Waiter<K, A>, exit: Exit.Exit<void>, restore: Restore): Effect.Effect<Lease<K, A>, E | PoolError> {
    if (waiter.reserved) {
      waiter.reserved = false
      if (waiter.state === "waiting" && Exit.isSuccess(exit) && !this.closed) {
        // Still waiting: start the creation on a fiber of its own and keep waiting, deadline and all.
        return Effect.zipRight(this.spawn(waiter), this.wait(waiter, restore))
      }
      // Served, failed or gone before its creation started: the reservation goes to the next waiter.
      this.unpend(waiter)
      this.unreserve(waiter.slot)
      const settled = this.settle(waiter, exit, restore)
      const closing = this.flush()
      return closing === Effect.void ? settled : Effect.zipRight(closing, settled)
    }
    const state = waiter.state
    waiter.state = "settled"
    waiter.wake = undefined
    switch (state) {
      case "item": {
        const item = waiter.item!
        waiter.item = undefined
        waiter.slot.tags.update(PoolMetrics.acquireWait, (this.now() - waiter.since) / 1000)
        return Exit.isSuccess(exit)
          ? Effect.succeed(item)
          : Effect.zipRight(this.release(item, exit), Effect.failCause(exit.cause))
      }
      case "failed":
        waiter.slot.breaker?.abandon(waiter.probe)
        return waiter.cause !== undefined
          ? (Effect.failCause(waiter.cause) as Effect.Effect<never, E>)
          : Effect.fail(waiter.error!)
      default: {
        // Still queued: the caller was interrupted while waiting (its creation, if any, goes on).
        waiter.slot.breaker?.abandon(waiter.probe)
        this.dequeue(waiter)
        this.dropIfEmpty(waiter.slot)
        return Exit.isFailure(exit) ? Effect.failCause(exit.cause) : Effect.dieMessage("a waiter woke unserved")
      }
    }
  }

  /**
   * Starts the creation granted to a waiter, on a fiber of its own (forked by
   * the waiter, so it inherits the caller's fiber refs): the caller stops
   * waiting at its deadline while the creation goes on, bounded by
   * `createTimeout` (as HikariCP does), with no timer of its own. Its item
   * goes to the key's first waiter (usually the caller) or to idle; its
   * failure fails the caller if it still waits. The creation takes over the
   * caller's probe of a half-open circuit: its outcome is the probe's verdict.
   */
  private spawn(waiter: Waiter<K, A>): Effect.Effect<void> {
    const probe = waiter.probe
    waiter.probe = false
    const slot = waiter.slot
    const creation = Effect.withFiberRuntime<void>((fiber) =>
      Effect.matchCauseEffect(
        this.create(slot, waiter.key, fiber as AnyFiber, probe, -1, Effect.interruptible, waiter),
        {
          onSuccess: (item) => this.delivered(item, waiter),
          onFailure: () =>
            Effect.suspend(() => {
              this.creationOver(waiter)
              this.dropIfEmpty(slot)
              return this.flush()
            })
        }
      )
    )
    // Started at once, on the caller's runtime (its fiber refs, its span): the connect begins
    // before anything scheduled after it, as when the caller ran it itself.
    return Effect.flatMap(Effect.runtime<never>(), (runtime) =>
      Effect.sync(() => {
        Runtime.runFork(runtime)(Effect.uninterruptible(creation), { immediate: true })
      })
    )
  }

  /**
   * A waiter's creation made an item: a probe's goes to its caller if it
   * still waits (else the connect itself is the probe's success); any other
   * goes back like a returned lease, to the key's first waiter or to idle.
   */
  private delivered(item: Item<K, A>, waiter: Waiter<K, A>): Effect.Effect<void> {
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
        return this.flush()
      }
      this.report(item.slot, "success", true, this.now())
      item.probe = false
    }
    // Handed on first (the caller itself, if it is the key's first waiter), then the caller may be granted anew.
    const ended = this.end(item, undefined)
    this.creationOver(waiter)
    return Effect.zipRight(ended, this.flush())
  }

  /** A waiter's creation is over without serving it: it waits as any other, and may be granted another. */
  private creationOver(waiter: Waiter<K, A>): void {
    if (waiter.state !== "waiting" || !waiter.pending) return
    this.unpend(waiter)
    this.creationEnded(waiter.slot)
  }

  private unreserve(slot: KeySlot<K, A>): void {
    slot.creating--
    this.creating--
    if (slot.group !== undefined) slot.group.size--
    this.checkDrained()
    this.freed(slot)
  }

  /**
   * Runs `acquire` for a reservation, in a fresh scope that becomes the item's:
   * after the key's creation backoff, bounded by `createTimeout`. Whatever
   * happens, the reservation ends exactly once: as a leased item, or freed.
   * (A caller's creation runs on a fiber of its own, see `spawn`: its caller
   * waits with its `acquireTimeout` while it runs.)
   */
  create(
    slot: KeySlot<K, A>,
    key: K,
    fiber: AnyFiber,
    probe: boolean,
    since: number,
    restore: Restore,
    owner?: Waiter<K, A>
  ): Effect.Effect<Item<K, A>, E | PoolError> {
    return Effect.flatMap(Scope.make(), (scope) => {
      const started = this.now()
      const { createTimeout } = this.settings
      let attempt: Effect.Effect<A, E | CreateTimeout> = this.acquire(key, scope)
      if (Number.isFinite(createTimeout)) {
        attempt = Effect.timeoutFail(attempt, {
          duration: Duration.millis(createTimeout),
          onTimeout: () => new CreateTimeout({ key: slot.description, timeoutMillis: createTimeout })
        })
      }
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
          slot.createFailures = 0
          slot.backoffUntil = 0
          const item = this.register(slot, exit.value, scope, fingerprint, fiber)
          item.probe = probe
          const now = this.now()
          slot.tags.update(PoolMetrics.createDuration, (now - started) / 1000)
          // A caller's wait is measured when it is served (see `settle`).
          if (since >= 0) slot.tags.update(PoolMetrics.acquireWait, (now - since) / 1000)
          // Shared: the new item serves waiters first (see `returned`), then more creations are granted if needed.
          if (!this.shares) this.creationEnded(slot)
          return Effect.succeed(item)
        }
        const now = this.now()
        if (Cause.isInterruptedOnly(exit.cause)) {
          slot.breaker?.abandon(probe)
        } else {
          // The caller it was started for gets its own error, before a circuit that opens now fails the rest.
          if (owner !== undefined && owner.state === "waiting" && owner.pending) {
            owner.cause = exit.cause
            this.dequeue(owner)
            this.settleWaiter(owner, "failed")
          }
          // A failed creation is a connection failure whatever its error says.
          slot.failures++
          this.failures++
          slot.tags.update(PoolMetrics.acquireFailures, 1)
          this.decisions.push({
            _tag: "Log",
            level: "Warning",
            message: `creating an item of key ${slot.description} failed`,
            cause: exit.cause
          })
          this.backOff(slot, now)
          this.report(slot, "connection", probe, now)
        }
        this.unreserve(slot)
        this.creationEnded(slot)
        return this.flush().pipe(
          Effect.zipRight(closeScope(scope, exit)),
          Effect.zipRight(Effect.failCause(exit.cause))
        )
      })
    })
  }

  /** After a failed creation, the key's next one waits: doubling per failure, capped, with jitter. */
  private backOff(slot: KeySlot<K, A>, now: number): void {
    const backoff = this.settings.createBackoff
    if (backoff === undefined) return
    const delay = backoffDelay(backoff, slot.createFailures, this.random())
    slot.createFailures++
    slot.backoffUntil = now + delay
  }

  private register(
    slot: KeySlot<K, A>,
    value: A,
    scope: Scope.CloseableScope,
    fingerprint: string | undefined,
    fiber: AnyFiber
  ): Item<K, A> {
    const now = this.now()
    const item = new Item(slot, value, scope, fingerprint, now, this)
    slot.creating--
    this.creating--
    slot.created++
    this.created++
    slot.tags.update(PoolMetrics.created, 1)
    this.items.add(item)
    this.lease(item, now, fiber)
    return item
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
      let waiter: Waiter<K, A> | undefined
      while ((waiter = this.waiters.head?.value) !== undefined && waiter.deadline <= now) {
        waiter.slot.timeouts++
        this.timeouts++
        waiter.slot.tags.update(PoolMetrics.acquireTimeouts, 1)
        this.fail(waiter, this.timeoutError(waiter.slot, waiter.key, waiter.since))
        this.dropIfEmpty(waiter.slot)
      }
      return Effect.void
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
      const now = this.now()
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
      const report: CleanupReport = { before, after: this.size, cleaned, keysDropped: this.keysDropped - dropped }
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
    return Effect.suspend(() => {
      const batch: Array<Item<K, A>> = []
      for (const item of this.lru) if (item.slot.breaker?.state !== "open") batch.push(item)
      return Effect.forEach(batch, (item) => this.maintainOne(kind, task, item), {
        concurrency: maintenanceConcurrency,
        discard: true
      }).pipe(Effect.zipRight(this.refillAll()))
    })
  }

  /** Refills every key below `minIdlePerKey` (a no-op, and no scan, when it is 0). */
  refillAll(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.settings.minIdlePerKey === 0 || this.closed) return Effect.void
      for (const slot of this.slots.values()) if (this.belowFloor(slot)) this.scheduleRefill(slot)
      return this.flush()
    })
  }

  private maintainOne(kind: "check" | "heartbeat", task: Maintenance, item: Item<K, A>): Effect.Effect<void> {
    // Uninterruptible but for the check itself: whatever ends the check, the item is put back or destroyed.
    return Effect.uninterruptibleMask((restore) => {
      if (item.state !== "idle" || this.closed) return Effect.void
      const slot = item.slot
      const idleSince = item.idleSince
      this.fromIdle(item)
      item.state = "leased"
      item.holder = undefined
      slot.inUse++
      this.inUse++
      slot.checking++
      const started = this.now()
      const run = bounded(task.run(item.value), task.timeout, kind)
      return Effect.flatMap(Effect.exit(restore(run)), (exit) => {
        slot.checking--
        const now = this.now()
        this.record(slot, kind, started, now, exit)
        if (item.state !== "leased") return Effect.void // destroyed by a shutdown meanwhile
        if (Exit.isFailure(exit)) {
          this.decisions.push({
            _tag: "Log",
            level: "Warning",
            message: `${kind} of an idle item of key ${slot.description} failed`,
            cause: exit.cause
          })
          // The check's own verdict is the breaker's only one: putting the broken item away is none.
          this.report(slot, Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "connection", false, now)
          return this.releaseBroken(item)
        }
        this.report(slot, "success", false, now)
        // Back where it was: a check is not a use, so idle expiry still applies.
        const back = this.giveBack(item)
        if (isIdle(item)) item.idleSince = idleSince
        return back
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
    const limit = this.settings.checkHistory
    if (limit === 0) return
    const result: CheckResult = Exit.isSuccess(exit)
      ? { kind, at: now, ok: true, millis: now - started }
      : { kind, at: now, ok: false, millis: now - started, error: describeCause(exit.cause) }
    slot.history ??= []
    if (slot.history.push(result) > limit) slot.history.shift()
  }

  /**
   * Reserves a creation for the pool's own use (a refill or a pre-warm) if
   * `slot` still lacks items (`missing`) and may create one now without
   * waiting: pool open, key live, circuit closed, limits and
   * `createConcurrency` allowing. It never evicts and never queues, so it
   * never competes with callers.
   */
  private reserveFill(slot: KeySlot<K, A>, missing: (slot: KeySlot<K, A>) => number): boolean {
    if (this.closed || this.slots.get(slot.id) !== slot) return false
    if (slot.breaker !== undefined && slot.breaker.state !== "closed") return false
    if (missing(slot) <= 0 || !this.canCreate(slot)) return false
    this.reserve(slot)
    return true
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

  private readonly belowFloorBy = (slot: KeySlot<K, A>): number =>
    this.settings.minIdlePerKey - slot.idle.size - slot.checking - slot.creating

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
          slot.refilling = false
          this.dropIfEmpty(slot)
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
      if (retryAfter > 0) return Effect.fail(this.circuitOpen(slot, retryAfter))
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
      this.closed = true
      let waiter: Waiter<K, A> | undefined
      while ((waiter = this.waiters.head?.value) !== undefined) {
        this.fail(waiter, new PoolClosed({ key: waiter.slot.description }))
        this.dropIfEmpty(waiter.slot)
      }
      let idle: Item<K, A> | undefined
      while ((idle = this.lru.head?.value) !== undefined) this.destroy(idle, "shutdown")
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
        Effect.flatMap((drained) => (drained ? Effect.void : this.forceClose(self)))
      )
    })
  }

  /**
   * At `drainTimeout`: interrupts the fibers still holding or creating
   * items, destroys the items still leased (their finalizers start now), and
   * returns. A finalizer still running then (one that hangs) is left to
   * finish on its own fiber, and a warning counts them.
   */
  private forceClose(self: AnyFiber): Effect.Effect<void> {
    return Effect.suspend(() => {
      const holders = new Set<AnyFiber>(this.creators)
      for (const lease of this.live) holders.add(lease.holder)
      for (const item of Array.from(this.items)) {
        if (item.state !== "leased") continue
        if (item.holder !== undefined) holders.add(item.holder)
        this.destroy(item, "shutdown")
      }
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

  // ---------------------------------------------------------------------------
  // snapshots
  // ---------------------------------------------------------------------------

  occupancy(): Occupancy {
    return snapshot.occupancy(this)
  }

  timeoutError(slot: KeySlot<K, A>, key: K, since: number): PoolTimeout {
    const s = this.settings
    return new PoolTimeout({
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

/** Reads an item's state afresh (past TypeScript's narrowing across a release). */
const isIdle = (item: Item<any, any>): boolean => item.state === "idle"

/** Health checks and heartbeats run this many items at a time. */
const maintenanceConcurrency = 4

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

const closeItem = (item: Item<any, any>): Effect.Effect<void> => closeScope(item.scope, Exit.void)
