/**
 * The pooled resource every library hands out, and the ledger that counts how
 * many are alive, so "live items" is a read that does not depend on what a
 * library chooses to report.
 */

/** A pooled resource: a tiny object, so heap figures measure the pool, not the item. */
export interface Item {
  readonly key: number
  readonly id: number
}

/** Counts creations and destructions across every pool of one process. */
export class Ledger {
  created = 0
  destroyed = 0

  /** Items created and not yet destroyed. */
  get alive(): number {
    return this.created - this.destroyed
  }

  /** Creates an item for `key`. */
  create(key: number): Item {
    return { key, id: ++this.created }
  }

  /** Records that an item was destroyed. */
  destroy(): void {
    this.destroyed++
  }
}
