/**
 * Creation rules that need no state beyond a key's counters: how long a key
 * waits before its next creation after failures. (Reservations, grants and
 * creation outcomes move here as the kernel split goes on: see
 * `KERNEL-PLAN.md`.)
 *
 * @internal
 */

/** `createBackoff` in milliseconds. */
export interface Backoff {
  readonly initial: number
  readonly max: number
}

/**
 * How long a key's next creation waits after `failures` failed creations in
 * a row (before this one): doubling per failure, capped at `max`, then
 * scaled by a jitter in [0.5, 1) from `random` (a number in [0, 1)). The
 * jitter spreads the retries of many keys; the engine passes `Math.random`,
 * a test a fixed or seeded one.
 */
export const backoffDelay = (backoff: Backoff, failures: number, random: number): number =>
  Math.min(backoff.max, backoff.initial * 2 ** failures) * (0.5 + random / 2)
