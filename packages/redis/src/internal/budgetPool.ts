/**
 * A pool under a cluster budget: the gate that takes a permit before each
 * creation (making room with the pool's own idle connections when the budget
 * is full), and the fiber that keeps the pool within what the budget allows
 * (retiring everything when the lease is lost, giving back idle connections
 * above this instance's fair share).
 *
 * @internal
 */
import type { GateContext } from "@cistern/pool/KeyedPool"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type {
  BudgetExhausted,
  BudgetUnavailable,
  GateOptions,
  Governed,
  GovernOptions,
  Permit,
  Service
} from "../ClusterBudget.js"

const annotations = { package: "@cistern/redis", module: "ClusterBudget" }

/** @internal */
export const gate =
  <K>(budget: Service, options: GateOptions<K> = {}) =>
  (context: GateContext<K>): Effect.Effect<Permit, BudgetExhausted | BudgetUnavailable, Scope.Scope> =>
    budget.permit(options.tenant?.(context.key, context.group) ?? context.group ?? "*", {
      onFull: context.evictIdle
    })

/** @internal */
export const govern = (
  budget: Service,
  pool: Governed,
  options: GovernOptions = {}
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    // Permits no longer counted: the connections they covered go, in-use ones when their lease ends.
    const retireOnLoss = Stream.runForEach(budget.lost, (lost) =>
      Effect.flatMap(pool.retireAll, (retired) =>
        Effect.logWarning(
          `lease of cluster budget "${lost.budget}" lost (${lost.detectedBy}): retired ${retired} connections`
        )
      )
    )
    // Above its fair share while others wait: idle connections go back first (never in-use ones).
    const giveBackOverShare = Effect.flatMap(budget.stats, (stats) =>
      stats.over > 0
        ? Effect.flatMap(pool.evictIdle(stats.over), (evicted) =>
            evicted > 0
              ? Effect.logDebug(`closed ${evicted} idle connections above the fair share of "${stats.name}"`)
              : Effect.void
          )
        : Effect.void
    )
    const every = Duration.decode(options.interval ?? "1 second")
    yield* Effect.forkScoped(Effect.annotateLogs(retireOnLoss, annotations))
    yield* Effect.forkScoped(
      giveBackOverShare.pipe(Effect.repeat(Schedule.spaced(every)), Effect.annotateLogs(annotations))
    )
  })
