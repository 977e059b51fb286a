/**
 * Health checks and heartbeats of idle items, and the key's check history:
 * which idle items a round checks, taking one out of idle while its check
 * runs (so no caller shares it), and the outcome: the breaker's verdict, the
 * history, and the item put back where it was or destroyed as broken (its
 * key refilled up to `minIdlePerKey`). The shell runs the check itself.
 *
 * @internal
 */
import type { CheckResult } from "../../PoolStats.js"
import type { Item, KeySlot } from "./model.js"
import { Release } from "./release.js"

/** How a check ended, as the kernel needs it: passed (`undefined`), or failed, interrupted or not. */
export interface CheckFailure {
  readonly interrupted: boolean
  /** What the history shows. */
  readonly error: string
  /** The shell's failure value, passed through to the log line. */
  readonly cause: unknown
}

/** Checks: health checks and heartbeats of idle items, and check history. */
export abstract class Checks<K, A> extends Release<K, A> {
  /** The items a round of checks takes: those idle now, but of keys whose circuit is open. */
  checkBatch(): Array<Item<K, A>> {
    const batch: Array<Item<K, A>> = []
    for (const item of this.lru) if (item.slot.breaker?.state !== "open") batch.push(item)
    return batch
  }

  /**
   * Takes an idle item out of idle for its check: counted in use (and
   * `checking`), held by no caller. False if it is no longer idle (leased or
   * destroyed since the round began) or the pool is closed.
   */
  checkOut(item: Item<K, A>): boolean {
    if (item.state !== "idle" || this.closed) return false
    this.fromIdle(item)
    item.state = "leased"
    item.holder = undefined
    item.slot.inUse++
    this.inUse++
    item.slot.extras().checking++
    return true
  }

  /**
   * A check of `item` (taken out at `started`, idle since `idleSince`) ended:
   * the result goes into the key's history and is the breaker's verdict; a
   * failed item is destroyed as broken, a healthy one goes back (to a waiter,
   * or idle with its idle time kept: a check is not a use).
   */
  checked(
    item: Item<K, A>,
    kind: "check" | "heartbeat",
    started: number,
    idleSince: number,
    failure: CheckFailure | undefined
  ): void {
    const slot = item.slot
    slot.extras().checking--
    const now = this.now()
    this.remember(slot, kind, started, now, failure?.error)
    if (item.state !== "leased") return // destroyed by a shutdown meanwhile
    if (failure !== undefined) {
      this.decisions.push({
        _tag: "Log",
        level: "Warning",
        message: `${kind} of an idle item of key ${slot.description} failed`,
        cause: failure.cause
      })
      // The check's own verdict is the breaker's only one: putting the broken item away is none.
      this.report(slot, failure.interrupted ? "interrupted" : "connection", false, now)
      this.markBroken(item)
      this.endLease(item, undefined)
      return
    }
    this.report(slot, "success", false, now)
    this.endLease(item, undefined)
    // Back where it was: a check is not a use, so idle expiry still applies.
    if (isIdle(item)) item.idleSince = idleSince
  }

  /** Appends a result (`error` if it failed) to the key's bounded history. */
  remember(slot: KeySlot<K, A>, kind: CheckResult["kind"], started: number, now: number, error?: string): void {
    const limit = this.settings.checkHistory
    if (limit === 0) return
    const result: CheckResult =
      error === undefined
        ? { kind, at: now + this.origin, ok: true, millis: now - started }
        : { kind, at: now + this.origin, ok: false, millis: now - started, error }
    const history = (slot.extras().history ??= [])
    if (history.push(result) > limit) history.shift()
  }
}

/** Reads an item's state afresh (past TypeScript's narrowing across a release). */
const isIdle = (item: Item<any, any>): boolean => item.state === "idle"
