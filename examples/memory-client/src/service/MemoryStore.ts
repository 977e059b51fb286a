/**
 * What the memory service stores, and the counts that prove a client lost no
 * call and duplicated none.
 *
 * `add` is idempotent per idempotency key: a request delivered twice (the
 * client retried after a connection reset that hid the first answer) stores
 * the memory once and answers the same id again. `deliveries` keeps how many
 * times each key arrived, so a test can tell "retried" from "duplicated".
 */

/** One stored memory. */
export interface Memory {
  readonly id: string
  readonly userId: string
  readonly text: string
  readonly idempotencyKey: string | undefined
}

/** One search hit: the share of the query's words found in the memory. */
export interface Hit {
  readonly id: string
  readonly text: string
  readonly score: number
}

/** Everything the store has received, by kind. */
export interface StoreCounts {
  /** `add_memory` requests that reached the store, retried deliveries included. */
  readonly addReceived: number
  /** Memories stored: `addReceived - addDuplicates`. */
  readonly addApplied: number
  /** Deliveries of an idempotency key already stored: answered with the first id, not stored again. */
  readonly addDuplicates: number
  /** `search_memories` requests that reached the store. */
  readonly searches: number
}

const words = (text: string): ReadonlyArray<string> =>
  text
    .toLowerCase()
    .split(/[^\p{L}\p{N}_-]+/u)
    .filter(Boolean)

/** An in-memory store of memories per user. It outlives the service's restarts, as a database would. */
export class MemoryStore {
  private readonly memories: Array<Memory> = []
  private readonly byKey = new Map<string, Memory>()
  private readonly deliveryCounts = new Map<string, number>()
  private serial = 0
  private received = 0
  private duplicates = 0
  private searched = 0

  /** Stores `text` for `userId` unless `idempotencyKey` was stored before; then answers that memory. */
  add(userId: string, text: string, idempotencyKey?: string): { readonly memory: Memory; readonly duplicate: boolean } {
    this.received++
    if (idempotencyKey !== undefined) {
      this.deliveryCounts.set(idempotencyKey, (this.deliveryCounts.get(idempotencyKey) ?? 0) + 1)
      const known = this.byKey.get(idempotencyKey)
      if (known !== undefined) {
        this.duplicates++
        return { memory: known, duplicate: true }
      }
    }
    const memory: Memory = { id: `mem_${++this.serial}`, userId, text, idempotencyKey }
    this.memories.push(memory)
    if (idempotencyKey !== undefined) this.byKey.set(idempotencyKey, memory)
    return { memory, duplicate: false }
  }

  /** The user's memories sharing words with `query`, best first. */
  search(userId: string, query: string, limit: number): ReadonlyArray<Hit> {
    this.searched++
    const wanted = new Set(words(query))
    if (wanted.size === 0) return []
    const hits: Array<Hit> = []
    for (const memory of this.memories) {
      if (memory.userId !== userId) continue
      const found = new Set(words(memory.text).filter((w) => wanted.has(w))).size
      if (found > 0) hits.push({ id: memory.id, text: memory.text, score: found / wanted.size })
    }
    return hits.sort((a, b) => b.score - a.score).slice(0, limit)
  }

  /** The counts so far. */
  counts(): StoreCounts {
    return {
      addReceived: this.received,
      addApplied: this.memories.length,
      addDuplicates: this.duplicates,
      searches: this.searched
    }
  }

  /** Every stored memory, oldest first. */
  all(): ReadonlyArray<Memory> {
    return [...this.memories]
  }

  /** How many times each idempotency key was delivered (1 unless a client retried it). */
  deliveries(): ReadonlyMap<string, number> {
    return new Map(this.deliveryCounts)
  }
}
