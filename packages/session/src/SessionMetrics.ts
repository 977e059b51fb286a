/**
 * Every metric a session store reports (`cistern_session_*`), labelled with
 * the store's name (`store`). Counters move by what happened since the last
 * sample (every `metricsInterval`, and at once on a fallback transition), so
 * the hot path only bumps plain numbers.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type { SessionStats } from "./SessionStats.js"

/**
 * Reads answered from memory.
 *
 * @since 0.1.0
 * @category metrics
 */
export const hits = Metric.counter("cistern_session_cache_hits_total", {
  description: "Session reads answered from memory",
  incremental: true
})

/**
 * Reads not answered from memory.
 *
 * @since 0.1.0
 * @category metrics
 */
export const misses = Metric.counter("cistern_session_cache_misses_total", {
  description: "Session reads not answered from memory",
  incremental: true
})

/**
 * Sessions or cache entries pushed out by the capacity bound.
 *
 * @since 0.1.0
 * @category metrics
 */
export const evictions = Metric.counter("cistern_session_evictions_total", {
  description: "Sessions or cache entries evicted by the capacity bound",
  incremental: true
})

/**
 * Sessions removed because their TTL passed.
 *
 * @since 0.1.0
 * @category metrics
 */
export const expired = Metric.counter("cistern_session_expired_total", {
  description: "Sessions removed because their TTL passed",
  incremental: true
})

/**
 * Values that failed the store's schema.
 *
 * @since 0.1.0
 * @category metrics
 */
export const schemaErrors = Metric.counter("cistern_session_schema_errors_total", {
  description: "Session values that failed the schema",
  incremental: true
})

/**
 * Failed or timed-out storage commands.
 *
 * @since 0.1.0
 * @category metrics
 */
export const storeErrors = Metric.counter("cistern_session_store_errors_total", {
  description: "Failed or timed-out session storage commands",
  incremental: true
})

/**
 * Writes dropped because the pending queue was full.
 *
 * @since 0.1.0
 * @category metrics
 */
export const droppedWrites = Metric.counter("cistern_session_writes_dropped_total", {
  description: "Session writes dropped because the pending queue was full",
  incremental: true
})

/**
 * Writes that reached storage after an outage.
 *
 * @since 0.1.0
 * @category metrics
 */
export const replayedWrites = Metric.counter("cistern_session_writes_replayed_total", {
  description: "Session writes that reached storage after an outage",
  incremental: true
})

/**
 * Live sessions (or cache entries) in this instance's memory.
 *
 * @since 0.1.0
 * @category metrics
 */
export const live = Metric.gauge("cistern_session_live", {
  description: "Sessions (or cache entries) held in this instance's memory"
})

/**
 * Writes waiting to reach storage.
 *
 * @since 0.1.0
 * @category metrics
 */
export const pendingWrites = Metric.gauge("cistern_session_pending_writes", {
  description: "Session writes waiting to reach storage"
})

/**
 * 1 while the store serves from memory because its storage is unreachable.
 *
 * @since 0.1.0
 * @category metrics
 */
export const fallback = Metric.gauge("cistern_session_fallback", {
  description: "1 while the session store serves from memory because its storage is unreachable"
})

/**
 * Reports a store's stats as the metrics above, labelled `store=<name>`:
 * samples `stats` every `interval` (default 5 seconds) on a fiber owned by
 * the current scope. Returns an effect that samples at once (a store runs it
 * on a fallback transition, so dashboards see the switch without a delay).
 *
 * @since 0.1.0
 * @category metrics
 */
export const report = (
  stats: Effect.Effect<SessionStats>,
  interval: Duration.DurationInput = "5 seconds"
): Effect.Effect<Effect.Effect<void>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let last: SessionStats | undefined
    const lock = yield* Effect.makeSemaphore(1)
    const add = (counter: Metric.Metric.Counter<number>, name: string, delta: number) =>
      delta > 0 ? Metric.incrementBy(Metric.tagged(counter, "store", name), delta) : Effect.void
    const sample = lock.withPermits(1)(
      Effect.flatMap(stats, (now) => {
        const before = last
        last = now
        const d = (f: (s: SessionStats) => number) => f(now) - (before === undefined ? 0 : f(before))
        const tag = (gauge: Metric.Metric.Gauge<number>) => Metric.tagged(gauge, "store", now.name)
        return Effect.all(
          [
            add(
              hits,
              now.name,
              d((s) => s.hits)
            ),
            add(
              misses,
              now.name,
              d((s) => s.misses)
            ),
            add(
              evictions,
              now.name,
              d((s) => s.evictions)
            ),
            add(
              expired,
              now.name,
              d((s) => s.expired)
            ),
            add(
              schemaErrors,
              now.name,
              d((s) => s.schemaErrors)
            ),
            add(
              storeErrors,
              now.name,
              d((s) => s.storeErrors)
            ),
            add(
              droppedWrites,
              now.name,
              d((s) => s.droppedWrites)
            ),
            add(
              replayedWrites,
              now.name,
              d((s) => s.replayedWrites)
            ),
            Metric.set(tag(live), now.live),
            Metric.set(tag(pendingWrites), now.pendingWrites),
            Metric.set(tag(fallback), now.fallback ? 1 : 0)
          ],
          { discard: true }
        )
      })
    )
    yield* sample.pipe(
      Effect.repeat(Schedule.spaced(interval)),
      Effect.catchAllCause(Effect.logWarning),
      Effect.annotateLogs({ package: "@cistern/session", module: "SessionMetrics" }),
      Effect.forkScoped
    )
    return sample
  })
