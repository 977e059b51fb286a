/**
 * The keyed pool's kernel: per-key slots, items, waiters, and every rule of
 * admission, dispatch, release, expiry, breaker accounting and shutdown, as
 * synchronous steps over plain data, one module per behaviour (layered over
 * `core.ts`, see there). It imports nothing from `effect` at run time: the
 * time, the key index, errors and metrics come through ports (`KernelIO`,
 * `SlotIndex`), items to close, refills and log lines are `Decision`s the
 * shell performs when the step ends (`takeDecisions`), and a parked caller
 * is woken through `KernelIO.wake`. The shell (`../shell/`) runs the
 * user's effects (creations, finalizers, checks) and feeds their outcomes
 * back as events (`settle`, `createSucceeded`, `createFailed`, `delivered`,
 * `endLease`, ...).
 *
 * @internal
 */
import { Shutdown } from "./shutdown.js"

export type { KernelIO, Metric, SlotIndex } from "./core.js"
export type { Settled } from "./creation.js"

/**
 * The engine's state and rules: every behaviour's layer. All bookkeeping is
 * synchronous, so each step is atomic with respect to other fibers without
 * locks.
 *
 * @internal
 */
export class Kernel<K, A> extends Shutdown<K, A> {}
