/**
 * Shared leases (`maxLeasesPerItem` above 1): lending an item to one more
 * caller, finding the open item with the fewest leases, serving the key's
 * waiters from items with room, and closing an item to new leases.
 *
 * @internal
 */
import { LeaseHeap, withRoom } from "./leases.js"
import { type Holder, type Item, type ItemExtras, type KeySlot, SharedLease, type Waiter } from "./model.js"
import { Waiting } from "./waiting.js"

/** Sharing: leases of one item by several callers at once. */
export abstract class Sharing<K, A> extends Waiting<K, A> {
  /** The open item of `slot` with the fewest leases, if it has room; items found unfit take no more. */
  roomIn(slot: KeySlot<K, A>, now: number): Item<K, A> | undefined {
    const heap = slot.rare?.shared
    if (heap === undefined) return undefined
    let open: ItemExtras<K, A> | undefined
    while ((open = withRoom(heap, this.maxLeases)) !== undefined) {
      if (this.unfit(open.item, now) === undefined) return open.item
      // Too old, or of old credentials: its current leases finish, then it is retired.
      heap.remove(open)
    }
    return undefined
  }

  /**
   * Adds a shared lease of a leased `item` for `fiber`. Unless `closed` (it
   * is being validated), the item takes more leases while it has room.
   */
  lendShared(item: Item<K, A>, now: number, fiber: Holder, probe: boolean, closed: boolean): SharedLease<K, A> {
    const slot = item.slot
    const rare = slot.extras()
    const share = item.rare!
    share.leases++
    rare.leases++
    this.leases++
    item.lastUsed = now
    slot.lastUsed = now
    const heap = (rare.shared ??= new LeaseHeap())
    if (heap.has(share)) heap.update(share)
    else if (!closed) heap.push(share)
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
    const heap = (item.slot.extras().shared ??= new LeaseHeap())
    if (!heap.has(item.rare!)) heap.push(item.rare!)
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
    item.slot.rare?.shared?.remove(item.rare!)
    this.creationEnded(item.slot)
  }
}
