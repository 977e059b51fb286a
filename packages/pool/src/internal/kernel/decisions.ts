/**
 * What the kernel decides and the shell performs, as plain data (see
 * `KERNEL-PLAN.md`). The kernel changes its lists and counters in one
 * synchronous step and returns these; the shell (fibers, `Deferred`,
 * `Scope`, metrics, logs) carries them out. Nothing here imports `effect`
 * at run time, so a test can drive the kernel with a plain loop.
 *
 * The types are generic over the kernel's own records (items, key slots),
 * which the shell treats as opaque handles.
 *
 * What must happen within the step goes through the kernel's ports instead
 * (`KernelIO`): waking a parked caller whose outcome the kernel wrote on its
 * waiter, waking the deadline timer, telling that the pool drained. Effect's
 * resume only schedules the fiber, so a wake in the middle of a step is the
 * same as one at its end, and it costs the contended hand-off no allocation;
 * the kernel's model test delays wakes in any order, as it would decisions.
 *
 * @internal
 */
import type { DestroyReason } from "../../PoolMetrics.js"

/** The level of a log line the kernel asks for. */
export type LogLevel = "Debug" | "Info" | "Warning"

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
export type Decision<S, I> = Destroy<I> | Refill<S> | Log
