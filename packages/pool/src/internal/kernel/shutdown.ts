/**
 * Shutdown: closing the pool (failing waiters, destroying idle items) and,
 * at the drain timeout, taking back what is still leased.
 *
 * @internal
 */
import { Admission } from "./admission.js"
import type { Holder, Item, Waiter } from "./model.js"

/** Shutdown: closing the pool and taking back leases at the drain timeout. */
export abstract class Shutdown<K, A> extends Admission<K, A> {
  /** Closes the pool: refuses new callers, fails waiters with `PoolClosed`, destroys idle items. */
  close(): void {
    this.closed = true
    let waiter: Waiter<K, A> | undefined
    while ((waiter = this.waiters.head?.value) !== undefined) {
      this.fail(waiter, this.io.errors.closed(waiter.slot.description))
      this.dropIfEmpty(waiter.slot)
    }
    let idle: Item<K, A> | undefined
    while ((idle = this.lru.head) !== undefined) this.destroy(idle, "shutdown")
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
}
