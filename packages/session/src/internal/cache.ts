import { ExpiryHeap } from "./expiryHeap.js"

/** @internal */
export interface Entry<A> {
  readonly id: string
  readonly value: A
  readonly expiresAt: number
  readonly freshUntil: number
  readonly indexValues: ReadonlyArray<string | undefined>
}

/** @internal */
export type IndexFunctions<A> = { readonly [name: string]: (value: A) => string | undefined }

/** Heap nodes may outnumber live entries by this much before a rebuild drops the stale ones. */
const heapSlack = 1024

/**
 * A bounded LRU of sessions with expiry times and secondary indexes. A JS
 * `Map` keeps insertion order, so "move to the back" (delete + set) and
 * "evict the front" are O(1); the expiry heap finds what expired without a
 * scan; index sets are updated on every write, eviction and expiry.
 *
 * @internal
 */
export class CacheImpl<A> {
  private readonly entries = new Map<string, Entry<A>>()
  private readonly heap = new ExpiryHeap<Entry<A>>()
  private readonly indexNames: ReadonlyArray<string>
  private readonly indexFns: ReadonlyArray<(value: A) => string | undefined>
  private readonly indexes: ReadonlyArray<Map<string, Set<string>>>
  evictions = 0
  expired = 0

  constructor(
    readonly capacity: number,
    indexes: IndexFunctions<A>,
    private readonly onRemove?: (entry: Entry<A>, reason: "evicted" | "expired") => void
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`)
    }
    this.indexNames = Object.keys(indexes)
    this.indexFns = this.indexNames.map((name) => indexes[name]!)
    this.indexes = this.indexNames.map(() => new Map())
  }

  get size(): number {
    return this.entries.size
  }

  indexValuesOf(value: A): ReadonlyArray<string | undefined> {
    return this.indexFns.map((f) => f(value))
  }

  /** The live entry of `id`, made most recently used; an expired one is removed. */
  get(id: string, now: number): Entry<A> | undefined {
    const entry = this.entries.get(id)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      this.remove(entry)
      this.expired++
      this.onRemove?.(entry, "expired")
      return undefined
    }
    this.entries.delete(id)
    this.entries.set(id, entry)
    return entry
  }

  /** Like `get`, without touching the LRU order. */
  peek(id: string, now: number): Entry<A> | undefined {
    const entry = this.entries.get(id)
    return entry === undefined || entry.expiresAt <= now ? undefined : entry
  }

  set(
    id: string,
    value: A,
    expiresAt: number,
    freshUntil: number,
    indexValues: ReadonlyArray<string | undefined> = this.indexValuesOf(value)
  ): Entry<A> {
    const previous = this.entries.get(id)
    if (previous !== undefined) this.remove(previous)
    const entry: Entry<A> = { id, value, expiresAt, freshUntil, indexValues }
    this.entries.set(id, entry)
    for (let i = 0; i < indexValues.length; i++) {
      const v = indexValues[i]
      if (v === undefined) continue
      const index = this.indexes[i]!
      let ids = index.get(v)
      if (ids === undefined) index.set(v, (ids = new Set()))
      ids.add(id)
    }
    if (Number.isFinite(expiresAt)) {
      this.heap.push(expiresAt, entry)
      if (this.heap.length > 2 * this.entries.size + heapSlack) this.compactHeap()
    }
    while (this.entries.size > this.capacity) {
      const oldest = this.entries.values().next().value!
      this.remove(oldest)
      this.evictions++
      this.onRemove?.(oldest, "evicted")
    }
    return entry
  }

  delete(id: string): boolean {
    const entry = this.entries.get(id)
    if (entry === undefined) return false
    this.remove(entry)
    return true
  }

  /** Live entries whose index `name` has `value`; unknown index names find nothing. */
  findBy(name: string, value: string, now: number): Array<Entry<A>> {
    const i = this.indexNames.indexOf(name)
    const ids = i < 0 ? undefined : this.indexes[i]!.get(value)
    if (ids === undefined) return []
    const found: Array<Entry<A>> = []
    for (const id of Array.from(ids)) {
      const entry = this.get(id, now)
      if (entry !== undefined) found.push(entry)
    }
    return found
  }

  hasIndex(name: string): boolean {
    return this.indexNames.includes(name)
  }

  get indexList(): ReadonlyArray<string> {
    return this.indexNames
  }

  /** Removes every entry whose expiry is at or before `now`; returns how many. */
  sweep(now: number): number {
    let removed = 0
    for (let node = this.heap.popDue(now); node !== undefined; node = this.heap.popDue(now)) {
      const entry = node.item
      // A stale node: the session was rewritten, touched or removed since.
      if (this.entries.get(entry.id) !== entry || entry.expiresAt !== node.at) continue
      this.remove(entry)
      this.expired++
      removed++
      this.onRemove?.(entry, "expired")
    }
    return removed
  }

  *values(): IterableIterator<Entry<A>> {
    yield* this.entries.values()
  }

  private remove(entry: Entry<A>): void {
    this.entries.delete(entry.id)
    for (let i = 0; i < entry.indexValues.length; i++) {
      const v = entry.indexValues[i]
      if (v === undefined) continue
      const index = this.indexes[i]!
      const ids = index.get(v)
      if (ids === undefined) continue
      ids.delete(entry.id)
      if (ids.size === 0) index.delete(v)
    }
  }

  private compactHeap(): void {
    const nodes: Array<{ at: number; item: Entry<A> }> = []
    for (const entry of this.entries.values()) {
      if (Number.isFinite(entry.expiresAt)) nodes.push({ at: entry.expiresAt, item: entry })
    }
    this.heap.rebuild(nodes)
  }
}
