/**
 * When an item or a key has had its time: the fitness rule applied whenever
 * an item would be handed out or put back, cleanup's idle and lifetime rule,
 * and whether an empty key must be kept because it remembers failures. Pure
 * verdicts of the state and the time (a number); the caller destroys or
 * drops.
 *
 * @internal
 */
import type { DestroyReason } from "../../PoolMetrics.js"
import type { Breaker } from "./breaker.js"

/** What fitness reads of an item. */
export interface FitnessView {
  readonly invalid: DestroyReason | undefined
  readonly fingerprint: string | undefined
  readonly createdAt: number
  readonly slot: { readonly fingerprint: string | undefined }
}

/**
 * Why an item may not be handed out (again), if it may not: the pool is
 * closed, it was marked broken, its key's credentials moved on, or it
 * outlived `maxLifetime`.
 */
export const unfit = (
  item: FitnessView,
  now: number,
  closed: boolean,
  maxLifetime: number
): DestroyReason | undefined => {
  if (closed) return "shutdown"
  if (item.invalid !== undefined) return item.invalid
  if (item.fingerprint !== item.slot.fingerprint) return "credentials"
  if (now - item.createdAt >= maxLifetime) return "lifetime"
  return undefined
}

/** The settings cleanup applies to idle items. */
export interface IdleRules {
  readonly idleTimeout: number
  readonly maxLifetime: number
  readonly minIdlePerKey: number
}

/** What cleanup reads of an idle item. */
export interface IdleView {
  readonly createdAt: number
  readonly idleSince: number
  readonly slot: { readonly idle: { readonly size: number } }
}

/**
 * Cleanup's verdict on one idle item: past `maxLifetime`, or idle longer
 * than `idleTimeout` while its key keeps more than `minIdlePerKey` idle (read
 * as the key is now, so items destroyed earlier in the same pass count).
 */
export const expired = (item: IdleView, now: number, rules: IdleRules): "lifetime" | "idle" | undefined => {
  if (now - item.createdAt >= rules.maxLifetime) return "lifetime"
  if (now - item.idleSince >= rules.idleTimeout && item.slot.idle.size > rules.minIdlePerKey) return "idle"
  return undefined
}

/** What the memory of failures reads of a key. */
export interface FailureMemoryView {
  readonly backoffUntil: number
  readonly lastBroken: number
  readonly lastFailure: number
  readonly breaker: Breaker | undefined
}

/**
 * Whether an empty key must be kept: its creation backoff runs, an item of
 * it failed a check or validation within the last `cleanupInterval`, its
 * breaker failed within the last `reset`, or it is open (or half-open) and
 * nobody came to probe it for a whole `reset` after it could be probed.
 * Forgetting such a key would let callers hammer a server that is down.
 */
export const remembersFailures = (slot: FailureMemoryView, now: number, cleanupInterval: number): boolean => {
  const breaker = slot.breaker
  if (now < slot.backoffUntil) return true
  if (now - slot.lastBroken < cleanupInterval) return true
  if (breaker === undefined || breaker.pristine) return false
  const reset = breaker.settings.reset
  if (breaker.state !== "closed") return now < breaker.openedAt + 2 * reset
  return now - slot.lastFailure < reset
}
