/**
 * Shared (multiplexed) leases, as plain synchronous state: which item a new
 * lease goes to, when a key needs another item, and what happens to an item
 * when one of its leases ends. Nothing here runs an effect; the kernel
 * (`sharing.ts`) asks and the shell acts (wakes waiters, starts creations, closes items).
 *
 * With `maxLeasesPerItem` at 1 (exclusive leases) none of this runs: the
 * engine's own idle stack and `inUse` counter already say everything.
 *
 * @internal
 */

/**
 * What the sharing rules need of an item: its current leases and its place
 * in its key's {@link LeaseHeap} (`-1` when it takes no new lease).
 *
 * @internal
 */
export interface Shareable {
  leases: number
  heapIndex: number
}

/**
 * The leased items of one key that still take new leases, as a binary
 * min-heap on their lease count: the item with the fewest leases is at the
 * top, so choosing where a new lease goes is O(1) and a lease starting or
 * ending is O(log items). Items that are broken, invalidated, retired or at
 * no limit leave it (see {@link LeaseHeap.remove}); idle items are not in it
 * (the key's idle stack holds them).
 *
 * @internal
 */
export class LeaseHeap<T extends Shareable> {
  private readonly heap: Array<T> = []

  get size(): number {
    return this.heap.length
  }

  /** The open item with the fewest leases. */
  get top(): T | undefined {
    return this.heap[0]
  }

  has(item: T): boolean {
    return item.heapIndex >= 0 && this.heap[item.heapIndex] === item
  }

  push(item: T): void {
    item.heapIndex = this.heap.length
    this.heap.push(item)
    this.up(item.heapIndex)
  }

  /** Takes an item out: it takes no new lease (a no-op when it is not in). */
  remove(item: T): void {
    if (!this.has(item)) return
    const at = item.heapIndex
    const last = this.heap.pop()!
    item.heapIndex = -1
    if (last === item) return
    this.heap[at] = last
    last.heapIndex = at
    this.down(at)
    this.up(last.heapIndex)
  }

  /** Puts an item back in order after its lease count changed by one. */
  update(item: T): void {
    if (!this.has(item)) return
    this.up(item.heapIndex)
    this.down(item.heapIndex)
  }

  *[Symbol.iterator](): IterableIterator<T> {
    yield* this.heap.slice()
  }

  private up(at: number): void {
    const heap = this.heap
    const item = heap[at]
    while (at > 0) {
      const parent = (at - 1) >> 1
      if (heap[parent].leases <= item.leases) break
      heap[at] = heap[parent]
      heap[at].heapIndex = at
      at = parent
    }
    heap[at] = item
    item.heapIndex = at
  }

  private down(at: number): void {
    const heap = this.heap
    const item = heap[at]
    const n = heap.length
    for (;;) {
      const left = 2 * at + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && heap[right].leases < heap[left].leases ? right : left
      if (heap[child].leases >= item.leases) break
      heap[at] = heap[child]
      heap[at].heapIndex = at
      at = child
    }
    heap[at] = item
    item.heapIndex = at
  }
}

/**
 * The item of a key a new lease may join now: the open item with the fewest
 * leases, if it has room under `max`. (An idle item, with none, comes first:
 * the caller looks at the key's idle stack before this.)
 *
 * @internal
 */
export const withRoom = <T extends Shareable>(heap: LeaseHeap<T>, max: number): T | undefined => {
  const top = heap.top
  return top !== undefined && top.leases < max ? top : undefined
}

/**
 * Whether a key's waiters need another item: more of them wait than the
 * creations already in flight will serve (each new item takes `max` leases
 * at once). With exclusive leases (`max` 1) every waiter without a creation
 * needs one.
 *
 * @internal
 */
export const needsItem = (waiting: number, creating: number, max: number): boolean =>
  // (0 × Infinity is NaN: with no creation in flight, any waiter needs one.)
  creating === 0 ? waiting > 0 : waiting > creating * max

/**
 * What becomes of an item when one of its leases ends: `"shared"` while
 * other leases remain (it takes new ones again if it is fit), `"returned"`
 * when that was the last and it is fit (to the key's waiters or to idle),
 * `"retired"` when that was the last and it is broken, invalidated, too old
 * or of old credentials (destroyed now). An item is idle — for idle expiry,
 * `maxLifetime`, health checks, heartbeats and eviction — only with no lease.
 *
 * @internal
 */
export const afterLease = (leasesLeft: number, fit: boolean): "shared" | "returned" | "retired" =>
  leasesLeft > 0 ? "shared" : fit ? "returned" : "retired"

/**
 * Leases statistics of a key's items: the total, and the most on one item.
 *
 * @internal
 */
export interface LeaseCounts {
  leases: number
  maxLeases: number
}
