/**
 * The metrics of a cluster budget (`cistern_budget_*`), each labelled with
 * the budget's name (`budget`); published through `ClusterBudget`.
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/** Seconds, from 0.5 ms to about 65 s, doubling. */
const seconds = MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 18 })

/** @internal */
export const limit = Metric.gauge("cistern_budget_limit", { description: "The budget's total limit" })

/** @internal */
export const used = Metric.gauge("cistern_budget_used", {
  description: "Permits counted across all instances, as of the last answer from Redis"
})

/** @internal */
export const held = Metric.gauge("cistern_budget_held", {
  description: "Permits this instance holds, those granted without Redis included"
})

/** @internal */
export const waiters = Metric.gauge("cistern_budget_wants_local", {
  description: "Calls waiting for a permit in this instance"
})

/** @internal */
export const wantsElsewhere = Metric.gauge("cistern_budget_wants_global", {
  description: "Permits other instances are waiting for, as of the last answer from Redis"
})

/** @internal */
export const acquires = Metric.counter("cistern_budget_acquire_total", {
  description: "Calls of permit by result (granted, exhausted, unavailable)",
  incremental: true
})

/** @internal */
export const state = Metric.gauge("cistern_budget_state", {
  description: "0 when the last answer from Redis was ok, 1 while it is learning, 2 when the last call failed"
})

/** @internal */
export const offline = Metric.gauge("cistern_budget_offline", {
  description: "Permits this instance holds that Redis does not count yet (granted while it could not be asked)"
})

/** @internal */
export const failOpen = Metric.counter("cistern_budget_fail_open_total", {
  description: "Permits granted without Redis, by mode (local-share, unlimited)",
  incremental: true
})

/** @internal */
export const reclaimed = Metric.counter("cistern_budget_reclaimed_total", {
  description: "Permits of expired instances reclaimed by this instance's calls",
  incremental: true
})

/** @internal */
export const leasesLost = Metric.counter("cistern_budget_lease_lost_total", {
  description: "Times this instance lost its lease",
  incremental: true
})

/** @internal */
export const redisSeconds = Metric.histogram(
  "cistern_budget_redis_seconds",
  seconds,
  "Duration of one budget script call, by op"
)

/** @internal */
export const waitSeconds = Metric.histogram("cistern_budget_wait_seconds", seconds, "Time from permit to its grant")
