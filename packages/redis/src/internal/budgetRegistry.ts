/**
 * Lists a cluster budget in the `PoolRegistry`, where an admin API (the one
 * of `@cistern/platform`, say) finds it next to the pools, as plain figures:
 * the registry knows nothing of Redis.
 *
 * @internal
 */
import * as PoolRegistry from "@cistern/pool/PoolRegistry"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import type { Service, Stats } from "../ClusterBudget.js"

/**
 * The figures of a budget's stats that the registry carries, field by field:
 * a field the budget adds later is not sent until the registry's schema has it.
 *
 * @since 0.1.0
 * @category getters
 * @internal
 */
export const toBudgetStats = (stats: Stats): PoolRegistry.BudgetStats => ({
  name: stats.name,
  instanceId: stats.instanceId,
  limit: stats.limit,
  used: stats.used,
  held: stats.held,
  waiters: stats.waiters,
  wantsElsewhere: stats.wantsElsewhere,
  over: stats.over,
  state: stats.state,
  granted: stats.granted,
  released: stats.released,
  exhausted: stats.exhausted,
  unavailable: stats.unavailable,
  reclaimed: stats.reclaimed,
  leasesLost: stats.leasesLost,
  pendingReleases: stats.pendingReleases,
  mode: stats.mode,
  offline: stats.offline,
  instances: stats.instances,
  failOpen: stats.failOpen,
  reasserted: stats.reasserted
})

/**
 * Registers the budget in the `PoolRegistry` when one is provided, until the
 * current scope closes; does nothing otherwise. Its stats are read at each
 * look (no I/O: they are what the budget last heard from Redis).
 *
 * @since 0.1.0
 * @category constructors
 * @internal
 */
export const registerBudget = (budget: Service): Effect.Effect<void, never, Scope.Scope> =>
  Effect.flatMap(Effect.serviceOption(PoolRegistry.PoolRegistry), (registry) =>
    registry._tag === "None"
      ? Effect.void
      : registry.value.registerBudget({
          name: budget.name,
          instanceId: budget.instanceId,
          stats: Effect.map(budget.stats, toBudgetStats)
        })
  )
