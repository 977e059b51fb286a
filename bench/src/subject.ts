/**
 * What every library under test is adapted to: one lease operation, in the
 * library's own style (an `Effect` or a `Promise`), so the shared workload in
 * `workload.ts` drives all of them through the same loop.
 */
import type * as Effect from "effect/Effect"
import type { Item, Ledger } from "./resource.js"

/** The pool a scenario asks for. */
export interface Shape {
  /** Items per key (per pool, for the single-pool scenarios). */
  readonly maxPerKey: number
  /** Callers one item serves at once (shared leases), for the scenario that measures them; 1 when absent. */
  readonly leasesPerItem?: number | undefined
  /** Idle expiry, for the scenario that measures it (real time). */
  readonly idle?: { readonly timeoutMs: number; readonly checkMs: number } | undefined
}

interface Common {
  /** Live keys as the pool reports them; `undefined` when it does not expose them. */
  readonly keys: () => number | undefined
  /** Shuts the pool down (outside any timed window). */
  readonly close: () => Promise<void>
}

/** A pool leased through Effect: `lease` holds an item of `key` while `body` runs. */
export interface EffectSubject extends Common {
  readonly style: "effect"
  /** Fails only if the pool does (a timeout, say): that fails the run. */
  readonly lease: (key: number, body: (item: Item) => Effect.Effect<void>) => Effect.Effect<void, unknown>
}

/** A pool leased through promises: the workload awaits `acquire` and calls `release` in a `finally`. */
export interface PromiseSubject extends Common {
  readonly style: "promise"
  readonly acquire: (key: number) => Item | Promise<Item>
  readonly release: (key: number, item: Item) => unknown
}

/** A live pool under test. */
export type Subject = EffectSubject | PromiseSubject

/** A library (or floor) under test: its label in the tables and how to make one pool of it. */
export interface Adapter {
  readonly label: string
  readonly make: (shape: Shape, ledger: Ledger) => Promise<Subject>
  /**
   * Set on the wake-up floors only (see `adapters/handoff.ts`), which are no
   * pools: runs `handOffs` hand-offs between two fibers and resolves with the
   * elapsed milliseconds.
   */
  readonly handOff?: ((handOffs: number) => Promise<number>) | undefined
}
