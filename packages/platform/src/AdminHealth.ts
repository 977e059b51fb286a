/**
 * How the admin API judges the pools' health, from their stats.
 *
 * A pool is **unhealthy** when it is closed or every key's circuit breaker is
 * open, and **degraded** when some keys' breakers are open, keys are half-open
 * or failing their health checks, it is at its total limit or its key limit,
 * keys are at their limit with callers waiting, callers are waiting, or
 * callers timed out since the previous check. The whole report
 * takes the worst status of its pools; no pool at all is healthy.
 *
 * @since 0.1.0
 */
import type { PoolStats } from "@cistern/pool/PoolStats"
import type * as Effect from "effect/Effect"
import type { Health, HealthReason } from "./AdminApi.js"
import * as internal from "./internal/health.js"

/**
 * Judges pools given the acquire timeouts each had at the previous check (by
 * name; a pool missing there is compared with 0).
 *
 * @since 0.1.0
 * @category constructors
 */
export const evaluate: (pools: ReadonlyArray<PoolStats>, previousTimeouts: ReadonlyMap<string, number>) => Health =
  internal.evaluate

/**
 * The reasons one pool is not healthy.
 *
 * @since 0.1.0
 * @category constructors
 */
export const poolReasons: (stats: PoolStats, timeoutsSincePreviousCheck: number) => Array<HealthReason> =
  internal.poolReasons

/**
 * Checks pools, remembering their acquire timeouts for the next check.
 *
 * @since 0.1.0
 * @category models
 */
export interface Checker {
  readonly check: (pools: ReadonlyArray<PoolStats>) => Effect.Effect<Health>
}

/**
 * Makes a {@link Checker} whose first check compares with no timeouts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeChecker: Effect.Effect<Checker> = internal.makeChecker
