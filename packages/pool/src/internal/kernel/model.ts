/**
 * The kernel's records, as plain data: items, shared leases, waiters and
 * per-key slots. Fields the shell owns (an item's scope, a parked caller's
 * resume function, fibers) are opaque here (`unknown`): the kernel stores and
 * compares them, never uses them. Nothing here imports `effect` at run time.
 *
 * @internal
 */
import type { PoolError } from "../../PoolError.js"
import type * as PoolMetrics from "../../PoolMetrics.js"
import type { CheckResult } from "../../PoolStats.js"
import type { Tags } from "../metrics.js"
import type { Breaker } from "./breaker.js"
import type { Group } from "./groups.js"
import type { LeaseHeap, Shareable } from "./leases.js"
import { Chain, Link, LinkedList } from "./linkedList.js"

/** A fiber, as the kernel sees it: a token the shell hands in (a holder, a waiter's caller). */
export type Holder = unknown

/**
 * One pooled resource. Its `handle` is the shell's (the scope holding the
 * finalizers its `acquire` added: closing it destroys the resource).
 *
 * @internal
 */
export class Item<K, A> {
  state: "idle" | "leased" | "destroyed" = "leased"
  /** Set on a leased item found broken: destroy it instead of returning it, for this reason. */
  invalid: PoolMetrics.DestroyReason | undefined
  /** The lease is a half-open circuit's probe: its outcome decides the circuit. */
  probe = false
  /** The fiber holding its exclusive lease (a shell token the kernel only stores and compares). */
  holder: Holder | undefined
  lastUsed: number
  idleSince = 0
  // Its links in its key's idle stack and in the pool-wide idle list (see `Chain`): fields, not node objects.
  keyPrev: Item<K, A> | undefined = undefined
  keyNext: Item<K, A> | undefined = undefined
  lruPrev: Item<K, A> | undefined = undefined
  lruNext: Item<K, A> | undefined = undefined
  /** Its shared leases and group membership, in a pool with either (see `ItemExtras`). */
  readonly rare: ItemExtras<K, A> | undefined

  constructor(
    readonly slot: KeySlot<K, A>,
    readonly value: A,
    /** The shell's handle on the resource (its scope): the kernel never looks inside. */
    readonly handle: unknown,
    readonly fingerprint: string | undefined,
    readonly createdAt: number,
    /** The pool shares leases (`maxLeasesPerItem` above 1). */
    shares: boolean
  ) {
    this.lastUsed = createdAt
    this.rare = shares || slot.group !== undefined ? new ItemExtras(this, slot.group !== undefined) : undefined
  }

  /** Callers' shared leases on it right now (0 in a pool without shared leases). */
  get leases(): number {
    return this.rare?.leases ?? 0
  }
}

/**
 * What only some pools' items carry: shared leases (`maxLeasesPerItem`
 * above 1) and a place in the tenant group's idle list (`group`).
 *
 * @internal
 */
export class ItemExtras<K, A> implements Shareable {
  /** Callers' shared leases on the item right now (see `leases.ts`). */
  leases = 0
  /** Its place in its key's `LeaseHeap` while it takes new shared leases, else -1. */
  heapIndex = -1
  /** Membership in its group's idle list (only in a pool with groups). */
  readonly groupLink: Link<Item<K, A>> | undefined

  constructor(
    readonly item: Item<K, A>,
    grouped: boolean
  ) {
    this.groupLink = grouped ? new Link<Item<K, A>>(item) : undefined
  }
}

/** A key's idle items, most recently released at the tail (linked through `Item.keyPrev`/`keyNext`). */
export class KeyIdle<K, A> extends Chain<Item<K, A>> {
  prev(item: Item<K, A>) {
    return item.keyPrev
  }
  next(item: Item<K, A>) {
    return item.keyNext
  }
  protected setPrev(item: Item<K, A>, prev: Item<K, A> | undefined) {
    item.keyPrev = prev
  }
  protected setNext(item: Item<K, A>, next: Item<K, A> | undefined) {
    item.keyNext = next
  }
}

/** Every key's idle items, least recently released at the head (linked through `Item.lruPrev`/`lruNext`). */
export class Lru<K, A> extends Chain<Item<K, A>> {
  prev(item: Item<K, A>) {
    return item.lruPrev
  }
  next(item: Item<K, A>) {
    return item.lruNext
  }
  protected setPrev(item: Item<K, A>, prev: Item<K, A> | undefined) {
    item.lruPrev = prev
  }
  protected setNext(item: Item<K, A>, next: Item<K, A> | undefined) {
    item.lruNext = next
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

  constructor(
    readonly item: Item<K, A>,
    readonly holder: Holder,
    readonly since: number,
    /** The lease is a half-open circuit's probe: its outcome decides the circuit. */
    public probe: boolean,
    validating: boolean
  ) {
    this.value = item.value
    this.validating = validating
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
  /** Or the cause its own creation failed with (the resource's error, or a defect): the shell's value, opaque here. */
  cause: unknown
  /**
   * A creation was granted to it and is not over: it stays in the queue, with
   * its deadline, while the creation runs on a fiber of its own (see
   * the shell's `spawn`). It is not counted as waiting, and no other creation
   * is granted to it meanwhile.
   */
  pending = false
  /**
   * The granted creation is reserved but not started yet: the waiter's own
   * fiber starts it (`Kernel.settle`), or gives the reservation back if it
   * was served, failed or interrupted first.
   */
  reserved = false
  /** How the shell resumes the parked caller (shell-owned; the kernel asks for it through `KernelIO.wake`). */
  wake: unknown
  readonly keyLink = new Link<Waiter<K, A>>(this)
  readonly poolLink = new Link<Waiter<K, A>>(this)

  constructor(
    readonly slot: KeySlot<K, A>,
    readonly key: K,
    readonly fiber: Holder,
    /** Arrival order across the whole pool. */
    readonly seq: number,
    readonly since: number,
    readonly deadline: number,
    /** A half-open circuit's probe; a creation started for it takes the probe over. */
    public probe: boolean
  ) {}
}

/** A key's waiters, oldest first, and how many of them have a creation of their own in flight. */
export class KeyWaiters<K, A> extends LinkedList<Waiter<K, A>> {
  /** Waiters with a creation of their own in flight (see `Waiter.pending`; only queued waiters are). */
  pending = 0
}

/**
 * The waiters of a key that has none: one shared empty list, so a key
 * carries no list of its own until its first caller waits (`Waiting.enqueue`
 * makes one and drops it when it empties). Only `enqueue` may push.
 */
const noWaiters = new KeyWaiters<any, any>()

/**
 * Everything the pool knows about one key (one `keyId` group). What a
 * healthy key never touches lives in `rare`, made on first use (`extras()`):
 * thousands of keys each carry one field for it.
 *
 * @internal
 */
export class KeySlot<K, A> {
  readonly idle = new KeyIdle<K, A>()
  /** Its callers waiting, oldest first (the shared empty list while there are none). */
  waiters: KeyWaiters<K, A> = noWaiters
  inUse = 0
  creating = 0
  created = 0
  destroyed = 0
  lastUsed: number
  /** Its tenant's group, in a pool with `group` (see `groups.ts`). */
  group: Group<Item<K, A>> | undefined = undefined
  /** Failures, checks, refills, shared leases: made by `extras()` on first use. */
  rare: KeyExtras<K, A> | undefined = undefined

  constructor(
    readonly id: unknown,
    /** The latest key seen: background refills create with it. */
    public key: K,
    readonly description: string,
    readonly max: number,
    public fingerprint: string | undefined,
    readonly createdAt: number,
    readonly breaker: Breaker | undefined,
    /** Metric labels: this key's own, or shared with other keys (only passed to `Telemetry`). */
    readonly tags: Tags
  ) {
    this.lastUsed = createdAt
  }

  get size(): number {
    return this.idle.size + this.inUse + this.creating
  }

  /** The key's rarely used state, made now if it has none yet. */
  extras(): KeyExtras<K, A> {
    return (this.rare ??= new KeyExtras<K, A>())
  }

  /** Makes the key's own waiter list on the first wait (see `noWaiters`). */
  ownWaiters(): KeyWaiters<K, A> {
    if (this.waiters === noWaiters) this.waiters = new KeyWaiters<K, A>()
    return this.waiters
  }

  /** Gives the waiter list back once it emptied (see `noWaiters`). */
  shedWaiters(): void {
    if (this.waiters.size === 0) this.waiters = noWaiters
  }

  /** Waiters of this key with a creation of their own in flight (see `Waiter.pending`). */
  get pending(): number {
    return this.waiters.pending
  }

  // Read-only views of `rare` (its defaults when the key has none), for the stats and the shell.
  get timeouts(): number {
    return this.rare?.timeouts ?? 0
  }
  get failures(): number {
    return this.rare?.failures ?? 0
  }
  get checking(): number {
    return this.rare?.checking ?? 0
  }
  get leases(): number {
    return this.rare?.leases ?? 0
  }
  get history(): Array<CheckResult> | undefined {
    return this.rare?.history
  }
  get backoffUntil(): number {
    return this.rare?.backoffUntil ?? 0
  }
  get lastFailure(): number {
    return this.rare?.lastFailure ?? 0
  }
  get lastBroken(): number {
    return this.rare?.lastBroken ?? Number.NEGATIVE_INFINITY
  }
  /** A background refill of this key runs (see the shell's `refill`): one at a time. */
  get refilling(): boolean {
    return this.rare?.refilling ?? false
  }
  set refilling(on: boolean) {
    if (on || this.rare !== undefined) this.extras().refilling = on
  }
}

/**
 * The part of a key's state a healthy key with exclusive leases never
 * touches: failure counts and memory, check history, retired credentials,
 * refills and checks, shared leases.
 *
 * @internal
 */
export class KeyExtras<K, A> {
  timeouts = 0
  failures = 0
  /** Fingerprints this key moved past: a late caller holding one does not move it back. */
  retired: Array<string | undefined> | undefined = undefined
  /** Items leased to a health check or heartbeat (a subset of `inUse`). */
  checking = 0
  /** Failed creations in a row, and when the next creation may start. */
  createFailures = 0
  backoffUntil = 0
  /** When the breaker last counted a failure, and when an item last failed a check or validation. */
  lastFailure = 0
  lastBroken = Number.NEGATIVE_INFINITY
  /** Recent check, heartbeat and failed validation results, oldest first (made on the first). */
  history: Array<CheckResult> | undefined = undefined
  /** A background refill of this key runs (see the shell's `refill`): one at a time. */
  refilling = false
  /** Leased items that take more shared leases (made on the first shared lease; see `leases.ts`). */
  shared: LeaseHeap<ItemExtras<K, A>> | undefined = undefined
  /** Callers' shared leases on its items right now. */
  leases = 0
}
