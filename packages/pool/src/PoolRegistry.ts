/**
 * The pools an application runs, by name. Every pool made with a `name` while
 * a `PoolRegistry` is provided registers itself for as long as its scope is
 * open, so an admin API can list them, read their stats and run cleanups.
 *
 * It also lists the shared budgets this process belongs to (a connection
 * budget shared by every instance of a service, say): whatever enforces one
 * registers a {@link BudgetEntry} whose stats are a plain {@link BudgetStats}
 * record, so an admin API shows it without knowing what stores the budget.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { CleanupReport, ItemDetails, PoolStats } from "./PoolStats.js"

/**
 * What the registry knows of one pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly name: string
  readonly stats: Effect.Effect<PoolStats>
  readonly items: Effect.Effect<ReadonlyArray<ItemDetails>>
  readonly cleanup: Effect.Effect<CleanupReport>
}

/**
 * A budget as this instance sees it: a limit shared by several instances of
 * a service (connections to one upstream across all of them, say), what is
 * used of it, this instance's part, and counters since this instance joined.
 * Shared figures (`used`, `wantsElsewhere`, `over`) are as of the last answer
 * from wherever the budget is kept. A Schema, so an admin API can send it as
 * it is.
 *
 * @since 0.1.0
 * @category models
 */
export const BudgetStats = Schema.Struct({
  /** The budget's name: every instance sharing it uses the same. */
  name: Schema.String,
  /** This instance's id in the budget. */
  instanceId: Schema.String,
  /** The total limit, across all instances. */
  limit: Schema.Number,
  /** Permits counted across all instances. */
  used: Schema.Number,
  /** Permits this instance holds. */
  held: Schema.Number,
  /** Callers waiting for a permit in this instance. */
  waiters: Schema.Number,
  /** Permits other instances are waiting for. */
  wantsElsewhere: Schema.Number,
  /** Permits above its fair share this instance holds while others wait. */
  over: Schema.Number,
  /** `ok`; `learning` (re-counting after the store lost its data or paused: nothing is granted); `unavailable` (the last call failed). */
  state: Schema.Literal("ok", "learning", "unavailable"),
  /** Permits granted. */
  granted: Schema.Number,
  /** Permits given back. */
  released: Schema.Number,
  /** Requests that gave up because the budget stayed full. */
  exhausted: Schema.Number,
  /** Requests that failed because the budget's store could not be asked. */
  unavailable: Schema.Number,
  /** Permits of expired instances this instance reclaimed. */
  reclaimed: Schema.Number,
  /** Times this instance lost its lease. */
  leasesLost: Schema.Number,
  /** Releases waiting to be replayed once the store answers again. */
  pendingReleases: Schema.Number,
  /**
   * What the budget does when its store cannot be asked: `fail-closed` (grant nothing), `local-share`
   * (grant up to a share of the limit), `unlimited` (only local limits). Optional, like the fields below:
   * a budget that predates them, or has no such notion, leaves them out.
   */
  mode: Schema.optionalWith(Schema.Literal("fail-closed", "local-share", "unlimited"), { exact: true }),
  /** Permits of `held` granted while the store could not be asked, not counted there yet. */
  offline: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Instances holding a lease in the budget at its last answer, this one included. */
  instances: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Permits granted while the store could not be asked (`local-share` or `unlimited` mode). */
  failOpen: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Permits granted while the store could not be asked that it counted once it answered again. */
  reasserted: Schema.optionalWith(Schema.Number, { exact: true })
}).annotations({ identifier: "BudgetStats" })

/**
 * The type of {@link BudgetStats}: plain numbers and strings, safe to send as
 * JSON.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetStats extends Schema.Schema.Type<typeof BudgetStats> {}

/**
 * What the registry knows of one budget this process belongs to.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetEntry {
  /** The budget's name, shared by every instance that belongs to it. */
  readonly name: string
  /** This instance's id in the budget. */
  readonly instanceId: string
  /** A snapshot of the figures: cheap, never fails, does no I/O of its own. */
  readonly stats: Effect.Effect<BudgetStats>
}

/**
 * What the registry offers: registering a pool or a budget for the life of a
 * scope, and listing what is registered.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Adds an entry until the current scope closes. A second pool with the same
   * name replaces the first in the listing until one of them closes.
   */
  readonly register: (entry: Entry) => Effect.Effect<void, never, Scope.Scope>
  /** Every registered pool, in registration order. */
  readonly list: Effect.Effect<ReadonlyArray<Entry>>
  /** One pool by name. */
  readonly get: (name: string) => Effect.Effect<Option.Option<Entry>>
  /**
   * Adds a budget until the current scope closes. Budgets are not replaced by
   * name: several instances of one budget in a process are all listed.
   */
  readonly registerBudget: (entry: BudgetEntry) => Effect.Effect<void, never, Scope.Scope>
  /** Every registered budget, in registration order. */
  readonly budgets: Effect.Effect<ReadonlyArray<BudgetEntry>>
}

/**
 * The service tag of the registry of named pools.
 *
 * @since 0.1.0
 * @category tags
 */
export class PoolRegistry extends Context.Tag("@cistern/pool/PoolRegistry")<PoolRegistry, Service>() {}

/**
 * Makes an empty registry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Service> = Effect.sync(() => {
  const entries = new Map<string, Entry>()
  // By entry, not by name: two instances of one budget in a process are both listed.
  const budgets = new Set<BudgetEntry>()
  return PoolRegistry.of({
    register: (entry) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          if (entries.has(entry.name)) {
            entries.delete(entry.name) // re-insert: the newest is listed last
          }
          entries.set(entry.name, entry)
        }),
        () =>
          Effect.sync(() => {
            if (entries.get(entry.name) === entry) entries.delete(entry.name)
          })
      ),
    list: Effect.sync(() => Array.from(entries.values())),
    get: (name) => Effect.sync(() => Option.fromNullable(entries.get(name))),
    registerBudget: (entry) =>
      Effect.acquireRelease(
        Effect.sync(() => void budgets.add(entry)),
        () => Effect.sync(() => void budgets.delete(entry))
      ),
    budgets: Effect.sync(() => Array.from(budgets))
  })
})

/**
 * Provides an in-memory registry.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<PoolRegistry> = Layer.effect(PoolRegistry, make)
