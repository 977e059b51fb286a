/**
 * Every metric a pool reports, in one place. All carry a `pool` label (the
 * pool's name); pools made with `metricsPerKey > 0` also label their first
 * keys (`key`, as `describeKey` shows it), and count the rest under
 * `key="other"`, so key cardinality cannot explode.
 *
 * Counters and histograms are updated as things happen; gauges are sampled
 * every `metricsInterval` and whenever `stats` is read.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/** Seconds, from 0.5 ms to about 65 s, doubling. */
const seconds = MetricBoundaries.exponential({ start: 0.0005, factor: 2, count: 18 })

/**
 * Items, counting those being created.
 *
 * @since 0.1.0
 * @category metrics
 */
export const size = Metric.gauge("cistern_pool_size", {
  description: "Items in the pool, counting those being created"
})

/**
 * Idle items, labelled like {@link size}.
 *
 * @since 0.1.0
 * @category metrics
 */
export const idle = Metric.gauge("cistern_pool_idle", { description: "Idle items" })

/**
 * Leased items (including those a health check or heartbeat holds), labelled like {@link size}.
 *
 * @since 0.1.0
 * @category metrics
 */
export const inUse = Metric.gauge("cistern_pool_in_use", {
  description: "Leased items (including those being checked)"
})

/**
 * Callers waiting for an item, labelled like {@link size}.
 *
 * @since 0.1.0
 * @category metrics
 */
export const waiting = Metric.gauge("cistern_pool_waiting", { description: "Callers waiting for an item" })

/**
 * Items being created, labelled like {@link size}.
 *
 * @since 0.1.0
 * @category metrics
 */
export const creating = Metric.gauge("cistern_pool_creating", { description: "Items being created" })

/**
 * Callers holding items right now, in a pool whose leases are shared
 * (`maxLeasesPerItem` above 1), labelled like {@link size}; {@link inUse}
 * counts the items they hold. Not set in a pool with exclusive leases.
 *
 * @since 0.1.0
 * @category metrics
 */
export const leases = Metric.gauge("cistern_pool_leases", { description: "Callers holding shared items" })

/**
 * Live keys of a pool.
 *
 * @since 0.1.0
 * @category metrics
 */
export const keys = Metric.gauge("cistern_pool_keys", { description: "Live keys" })

/**
 * Items of a tenant group (in a pool given `group`), counting those being
 * created: labelled `group=<id>` for the first `metricsPerKey` groups, the
 * rest summed under `group="other"`.
 *
 * @since 0.1.0
 * @category gauges
 */
export const groupSize = Metric.gauge("cistern_pool_group_size", { description: "Items of a tenant group" })

/**
 * Idle items of a tenant group, labelled like {@link groupSize}.
 *
 * @since 0.1.0
 * @category gauges
 */
export const groupIdle = Metric.gauge("cistern_pool_group_idle", { description: "Idle items of a tenant group" })

/**
 * Items created, counted per pool (and per labelled key).
 *
 * @since 0.1.0
 * @category metrics
 */
export const created = Metric.counter("cistern_pool_created_total", { description: "Items created", incremental: true })

/**
 * Items destroyed, by `reason`: idle, lifetime, invalidated, failed_check,
 * evicted, credentials, shutdown.
 *
 * @since 0.1.0
 * @category metrics
 */
export const destroyed = Metric.counter("cistern_pool_destroyed_total", {
  description: "Items destroyed, by reason",
  incremental: true
})

/**
 * Callers that failed with `PoolTimeout`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const acquireTimeouts = Metric.counter("cistern_pool_acquire_timeouts_total", {
  description: "Callers that gave up after acquireTimeout",
  incremental: true
})

/**
 * Creations that failed (the resource's own error, or `CreateTimeout`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const acquireFailures = Metric.counter("cistern_pool_acquire_failures_total", {
  description: "Creations that failed (the resource's own error, a defect, or createTimeout)",
  incremental: true
})

/**
 * Leases served at once from idle are not recorded (they wait nothing, and a
 * histogram update on every lease is a tenth of the lease's cost): this is
 * the wait of callers that queued or created.
 *
 * @since 0.1.0
 * @category metrics
 */
export const acquireWait = Metric.histogram(
  "cistern_pool_acquire_wait_seconds",
  seconds,
  "Time from asking for an item to holding one, for callers that found no idle item (waited or created)"
)

/**
 * How long leases last, in seconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const leaseDuration = Metric.histogram("cistern_pool_lease_duration_seconds", seconds, "How long leases last")

/**
 * How long successful creations take, in seconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const createDuration = Metric.histogram(
  "cistern_pool_create_duration_seconds",
  seconds,
  "How long successful creations take"
)

/**
 * Circuit transitions, by the state entered (`to`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const breakerTransitions = Metric.counter("cistern_pool_breaker_transitions_total", {
  description: "Circuit breaker transitions, by the state entered",
  incremental: true
})

/**
 * Why an item was destroyed.
 *
 * @since 0.1.0
 * @category models
 */
export type DestroyReason =
  | "idle"
  | "lifetime"
  | "invalidated"
  | "failed_check"
  | "evicted"
  | "credentials"
  | "shutdown"
