/**
 * Per-key circuit breaking. After `failures` consecutive connection failures
 * (or a `failureRate` over the last `window` calls, once `minimumCalls` were
 * seen) a key's circuit opens: its callers fail at once with `CircuitOpen`
 * and no connection attempt reaches the server. After `reset`, exactly
 * `halfOpenProbes` callers are let through; if all succeed the circuit
 * closes, if one fails it opens again.
 *
 * What counts: failed creations (including `createTimeout`), and failures of
 * a lease that `isConnectionError` recognises. Caller-fault errors and
 * interruptions do not count.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"

/**
 * How a key's circuit breaker opens, and when it probes again.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Consecutive failures that open the circuit. Default 5. */
  readonly failures?: number | undefined
  /** Failure rate in (0, 1] over the last `window` calls that opens it. Default: not used. */
  readonly failureRate?: number | undefined
  /** Calls to see before `failureRate` applies. Default 10. */
  readonly minimumCalls?: number | undefined
  /** Calls the rate is measured over. Default 20. */
  readonly window?: number | undefined
  /** How long the circuit stays open before probing. Default 30 seconds. */
  readonly reset?: Duration.DurationInput | undefined
  /** Callers let through while half-open, all of which must succeed. Default 1. */
  readonly halfOpenProbes?: number | undefined
}

/**
 * The value each breaker option takes when it is not given.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  failures: 5,
  minimumCalls: 10,
  window: 20,
  reset: Duration.seconds(30),
  halfOpenProbes: 1
} as const
