/**
 * What the kernel decides and the shell performs, as plain data (see
 * `KERNEL-PLAN.md`). The kernel changes its lists and counters in one
 * synchronous step and returns these; the shell (fibers, `Deferred`,
 * `Scope`, metrics, logs) carries them out. Nothing here imports `effect`
 * at run time, so a test can drive the kernel with a plain loop.
 *
 * The types are generic over the kernel's own records (items, waiters, key
 * slots), which the shell treats as opaque handles.
 *
 * @internal
 */
import type { DestroyReason } from "../../PoolMetrics.js"

/** The level of a log line the kernel asks for. */
export type LogLevel = "Debug" | "Info" | "Warning"

/**
 * A waiter's outcome was written on it (an item, a failure, or a creation
 * granted to it): wake its fiber so it settles what it owns.
 *
 * @internal
 */
export interface Wake<W> {
  readonly _tag: "Wake"
  readonly waiter: W
}

/**
 * A reservation was counted for `slot` (limits already see it): start a
 * creation, for `waiter` if one was granted it (its fiber starts it), or
 * for the pool itself (a refill or pre-warm).
 *
 * @internal
 */
export interface Create<S, W> {
  readonly _tag: "Create"
  readonly slot: S
  readonly waiter: W | undefined
  /** The creation is a half-open circuit's probe: its outcome decides the circuit. */
  readonly probe: boolean
}

/**
 * An item left the pool (its counts are gone): close its scope, on a fiber of
 * its own, exactly once.
 *
 * @internal
 */
export interface Destroy<I> {
  readonly _tag: "Destroy"
  readonly item: I
  readonly reason: DestroyReason
}

/**
 * A key fell below `minIdlePerKey`: start one background refill of it (the
 * kernel marks the key as refilling, so at most one runs per key).
 *
 * @internal
 */
export interface Refill<S> {
  readonly _tag: "Refill"
  readonly slot: S
}

/**
 * The oldest waiter's deadline changed: the deadline timer sleeps until `at`
 * (milliseconds, the kernel's clock), or parks when `at` is `undefined`.
 *
 * @internal
 */
export interface Arm {
  readonly _tag: "Arm"
  readonly at: number | undefined
}

/**
 * The pool is closed and nothing is leased, being created or being closed:
 * shutdown may return.
 *
 * @internal
 */
export interface Drained {
  readonly _tag: "Drained"
}

/**
 * A line for the pool's log (breaker transitions, evictions, failed
 * creations); `cause` is the shell's failure value, passed through untouched.
 *
 * @internal
 */
export interface Log {
  readonly _tag: "Log"
  readonly level: LogLevel
  readonly message: string
  readonly cause?: unknown
}

/**
 * Everything a kernel step can ask of the shell.
 *
 * @internal
 */
export type Decision<S, I, W> = Wake<W> | Create<S, W> | Destroy<I> | Refill<S> | Arm | Drained | Log
