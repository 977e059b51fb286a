/**
 * The waiter queue: arrival (deadlines monotone along the queue), leaving it,
 * granting a creation to a waiter and its `pending` accounting, serving or
 * failing a waiter (and waking its caller), cross-key fairness (who a freed
 * slot belongs to), and expiring waiters past their deadline.
 *
 * @internal
 */
import type { PoolError } from "../../PoolError.js"
import { Core } from "./core.js"
import { type Holder, type KeySlot, Waiter } from "./model.js"

/** Waiting: the queue of callers, its deadlines and its fairness. */
export abstract class Waiting<K, A> extends Core<K, A> {
  enqueue(slot: KeySlot<K, A>, key: K, fiber: Holder, since: number, probe: boolean): Waiter<K, A> {
    // Deadlines never decrease along the queue, so one timer for the oldest
    // serves all: a caller re-admitted after a failed validation (an earlier
    // `since`) may time out later by at most that validation's time.
    const deadline = Math.max(since + this.settings.acquireTimeout, this.waiters.tail?.value.deadline ?? 0)
    const waiter = new Waiter(slot, key, fiber, this.arrivals++, since, deadline, probe)
    slot.ownWaiters().push(waiter.keyLink)
    this.waiters.push(waiter.poolLink)
    if (this.waiters.size === 1) this.io.waiting()
    return waiter
  }

  dequeue(waiter: Waiter<K, A>): void {
    waiter.slot.waiters.remove(waiter.keyLink)
    this.waiters.remove(waiter.poolLink)
    this.unpend(waiter)
    waiter.slot.shedWaiters()
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
    waiter.slot.waiters.pending++
    this.pending++
  }

  unpend(waiter: Waiter<K, A>): void {
    if (!waiter.pending) return
    waiter.pending = false
    waiter.slot.waiters.pending--
    this.pending--
  }

  /** The first waiter of `slot` without a creation of its own. */
  firstBare(slot: KeySlot<K, A>): Waiter<K, A> | undefined {
    let link = slot.waiters.head
    if (slot.pending > 0) while (link?.value.pending) link = link.next
    return link?.value
  }

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

  fail(waiter: Waiter<K, A>, error: PoolError): void {
    waiter.error = error
    this.dequeue(waiter)
    this.settleWaiter(waiter, "failed")
  }

  settleWaiter(waiter: Waiter<K, A>, state: "item" | "failed"): void {
    waiter.state = state
    this.io.wake(waiter)
  }

  /** Fails the waiters whose deadline passed with `PoolTimeout`, oldest first (deadlines follow arrival). */
  expire(now: number): void {
    let waiter: Waiter<K, A> | undefined
    while ((waiter = this.waiters.head?.value) !== undefined && waiter.deadline <= now) {
      waiter.slot.extras().timeouts++
      this.timeouts++
      this.io.update(waiter.slot.tags, "acquireTimeouts", 1)
      this.fail(waiter, this.timeoutError(waiter.slot, waiter.key, waiter.since))
      this.dropIfEmpty(waiter.slot)
    }
  }
}
