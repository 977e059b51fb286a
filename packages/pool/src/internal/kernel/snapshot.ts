/**
 * Read-only views of the kernel's state: occupancy, per-key and per-group
 * stats, item details, key health. Pure functions of the state and the time
 * (a number), over structural views of the kernel's records, so they import
 * nothing from the engine and nothing from `effect` at run time.
 *
 * @internal
 */
import type { Occupancy } from "../../PoolError.js"
import type { CheckResult, GroupStats, ItemDetails, KeyHealth, KeyStats } from "../../PoolStats.js"
import type { Breaker } from "./breaker.js"

/** What a view reads of a key's slot. */
export interface SlotView {
  readonly description: string
  readonly max: number
  readonly size: number
  readonly idle: { readonly size: number }
  readonly waiters: { readonly size: number }
  readonly pending: number
  readonly inUse: number
  readonly creating: number
  readonly created: number
  readonly destroyed: number
  readonly timeouts: number
  readonly failures: number
  readonly createdAt: number
  readonly lastUsed: number
  readonly checking: number
  readonly leases: number
  readonly history: ReadonlyArray<CheckResult> | undefined
  readonly breaker: Breaker | undefined
}

/** What a view reads of the whole pool. */
export interface PoolView {
  readonly size: number
  readonly idle: number
  readonly inUse: number
  readonly creating: number
  readonly waiters: { readonly size: number }
  readonly pending: number
}

/** What a view reads of an item. */
export interface ItemView<S> {
  readonly slot: S
  readonly state: "idle" | "leased" | "destroyed"
  readonly holder: unknown
  readonly createdAt: number
  readonly lastUsed: number
  readonly idleSince: number
  readonly leases: number
}

/** What a view reads of a tenant group. */
export interface GroupView {
  readonly id: string
  readonly max: number
  readonly size: number
  readonly idle: { readonly size: number }
  readonly keys: number
}

/** The pool's occupancy; waiters with a creation of their own in flight are not counted as waiting. */
export const occupancy = (pool: PoolView): Occupancy => ({
  size: pool.size,
  idle: pool.idle,
  inUse: pool.inUse,
  creating: pool.creating,
  waiting: pool.waiters.size - pool.pending
})

/** One key's occupancy, counted like the pool's. */
export const keyOccupancy = (slot: SlotView): Occupancy => ({
  size: slot.size,
  idle: slot.idle.size,
  inUse: slot.inUse,
  creating: slot.creating,
  waiting: slot.waiters.size - slot.pending
})

/**
 * A circuit as a caller arriving at `now` meets it: an open circuit whose
 * reset time has passed admits a probe, so it is reported half-open although
 * the breaker only moves when that probe comes (see `Breaker.admit`).
 */
export const circuitAt = (breaker: Breaker, now: number): Breaker["state"] =>
  breaker.state === "open" && now >= breaker.openedAt + breaker.settings.reset ? "half-open" : breaker.state

/**
 * A key's health: its circuit as met at `now` (the kernel's clock), its last
 * check, and bounded histories. Times come out as epoch milliseconds: results
 * and transitions are stored so, `retryAt` adds the breaker's `origin`.
 */
export const health = (slot: SlotView, now: number): KeyHealth => {
  const breaker = slot.breaker
  const history = slot.history ?? []
  const lastCheck = history.length === 0 ? null : history[history.length - 1]
  const state = breaker === undefined ? "closed" : circuitAt(breaker, now)
  const failing = (breaker?.consecutive ?? 0) > 0 || (lastCheck !== null && !lastCheck.ok)
  return {
    state: state === "open" ? "open" : state === "half-open" || failing ? "degraded" : "healthy",
    breaker: state,
    consecutiveFailures: breaker?.consecutive ?? 0,
    retryAt:
      breaker !== undefined && state === "open"
        ? Math.max(now, breaker.openedAt + breaker.settings.reset) + breaker.origin
        : null,
    lastCheck,
    history: history.slice(),
    transitions: breaker === undefined ? [] : breaker.transitions.slice()
  }
}

/**
 * One key's stats; `maxLeases` (the most shared leases on one of its items)
 * is given only in a pool with shared leases. `now` and the slot's times are
 * the kernel's clock; `origin` (`Core.origin`) makes them epoch milliseconds.
 */
export const keyStats = (slot: SlotView, now: number, maxLeases: number | undefined, origin: number): KeyStats => ({
  key: slot.description,
  max: slot.max,
  ...keyOccupancy(slot),
  created: slot.created,
  destroyed: slot.destroyed,
  timeouts: slot.timeouts,
  failures: slot.failures,
  createdAt: slot.createdAt + origin,
  lastUsed: slot.lastUsed + origin,
  checking: slot.checking,
  health: health(slot, now),
  ...(maxLeases === undefined ? {} : { leases: slot.leases, maxLeases })
})

/** Every live item, as the admin view shows it. */
export const itemDetails = <S extends { readonly description: string }>(
  items: Iterable<ItemView<S>>,
  now: number,
  shares: boolean,
  origin: number
): Array<ItemDetails> => {
  const details: Array<ItemDetails> = []
  for (const item of items) {
    const idle = item.state === "idle"
    details.push({
      key: item.slot.description,
      state: idle ? "idle" : "leased",
      createdAt: item.createdAt + origin,
      lastUsed: item.lastUsed + origin,
      ageMillis: now - item.createdAt,
      idleMillis: idle ? now - item.idleSince : 0,
      // A health check or a creation in progress holds an item without a caller's lease.
      leases: shares ? item.leases : item.state === "leased" && item.holder !== undefined ? 1 : 0
    })
  }
  return details
}

/** Every tenant group's size against its limit. */
export const groupStats = (groups: Iterable<GroupView>): Array<GroupStats> => {
  const out: Array<GroupStats> = []
  for (const group of groups) {
    out.push({
      group: group.id,
      max: Number.isFinite(group.max) ? group.max : null,
      size: group.size,
      idle: group.idle.size,
      keys: group.keys
    })
  }
  return out
}

/** The most shared leases on one item, per key (O(items): for stats only). */
export const busiest = <S>(items: Iterable<ItemView<S>>): Map<S, number> => {
  const most = new Map<S, number>()
  for (const item of items) {
    if (item.leases > (most.get(item.slot) ?? 0)) most.set(item.slot, item.leases)
  }
  return most
}
