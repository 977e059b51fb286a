import { KeyedPool, PoolRegistry, type PoolStats } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Metric, MetricBoundaries, Redacted, TestClock } from "effect"
import { captureLogs, makeResources, settle } from "./utils/fixtures.js"
import { client, httpClient, raw, serve } from "./utils/http.js"
import { parseStrict, sampleValue } from "./utils/prometheus.js"

const secret = "metrics-token-3b1d0c7e5f"
const token = Redacted.make(secret)

/**
 * Until the pool exports its own metrics, these mirror its stats under the
 * names it is expected to use (`cistern_pool_*`, labelled by pool), as an
 * application would; once it exports them, the test checks the pool's own.
 */
const gauge = (name: string, description: string) => Metric.gauge(name, { description })
const size = gauge("cistern_pool_size", "Items, counting those being created")
const idle = gauge("cistern_pool_idle", "Idle items")
const inUse = gauge("cistern_pool_in_use", "Leased items")
const waiting = gauge("cistern_pool_waiting", "Callers waiting for an item")
const keys = gauge("cistern_pool_keys", "Live keys")
const timeouts = Metric.counter("cistern_pool_acquire_timeouts_total", { description: "Callers that gave up" })
/** The test's own, so their numbers are known. */
const keySize = gauge("test_pool_key_size", "Items of one key")
const waits = Metric.histogram(
  "test_acquire_wait_seconds",
  MetricBoundaries.exponential({ start: 0.001, factor: 10, count: 5 }),
  "How long callers waited for an item"
)

const mirror = (stats: PoolStats.PoolStats) =>
  Effect.gen(function* () {
    const pool = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>) => Metric.tagged(metric, "pool", stats.name)
    const exported = (yield* Metric.snapshot).some(
      (pair) =>
        pair.metricKey.name === "cistern_pool_size" &&
        pair.metricKey.tags.some((tag) => tag.key === "pool" && tag.value === stats.name)
    )
    if (!exported) {
      yield* Metric.set(pool(size), stats.size)
      yield* Metric.set(pool(idle), stats.idle)
      yield* Metric.set(pool(inUse), stats.inUse)
      yield* Metric.set(pool(waiting), stats.waiting)
      yield* Metric.set(pool(keys), stats.keys)
      yield* Metric.incrementBy(pool(timeouts), stats.timeouts)
    }
    yield* Effect.forEach(stats.perKey, (key) =>
      Metric.set(keySize.pipe(pool, Metric.tagged("key", key.key)), key.size)
    )
  })

describe("/metrics", () => {
  it.scoped("parses as Prometheus text and its numbers agree with the pool's stats", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        name: "metered",
        acquire: resources.acquire,
        maxPerKey: 1,
        acquireTimeout: "10 seconds"
      }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
      const server = yield* serve(registry, { token })

      const hold = yield* Deferred.make<void>()
      yield* Effect.forkScoped(pool.use("tenant-a", () => Deferred.await(hold)))
      yield* pool.use("tenant-b", () => Effect.void)
      const late = yield* Effect.fork(Effect.either(pool.use("tenant-a", () => Effect.void)))
      yield* settle
      yield* TestClock.adjust("10 seconds")
      yield* Fiber.join(late)
      yield* Effect.fork(pool.use("tenant-a", () => Effect.void))
      yield* settle
      // lets a pool that samples its gauges (every 5 seconds by default) take a sample of this state
      yield* TestClock.adjust("5 seconds")
      yield* Effect.forEach([0.0005, 0.004, 0.004, 2], (seconds) =>
        Metric.update(waits.pipe(Metric.tagged("pool", "metered")), seconds)
      )

      const admin = yield* client(server, token)
      const view = yield* admin.cistern.getPool({ path: { name: "metered" } })
      yield* mirror(view.stats)

      const response = yield* raw(server, { path: "/metrics", headers: { authorization: `Bearer ${secret}` } })
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
      const metrics = parseStrict(response.body)
      const labels = { pool: "metered" }
      const { stats } = view
      assert.deepStrictEqual(
        [
          sampleValue(metrics, "cistern_pool_size", labels),
          sampleValue(metrics, "cistern_pool_idle", labels),
          sampleValue(metrics, "cistern_pool_in_use", labels),
          sampleValue(metrics, "cistern_pool_waiting", labels),
          sampleValue(metrics, "cistern_pool_keys", labels),
          sampleValue(metrics, "cistern_pool_acquire_timeouts_total", labels)
        ],
        [stats.size, stats.idle, stats.inUse, stats.waiting, stats.keys, stats.timeouts]
      )
      assert.deepStrictEqual([stats.size, stats.idle, stats.inUse, stats.waiting, stats.timeouts], [2, 1, 1, 1, 1])
      for (const key of stats.perKey) {
        assert.strictEqual(sampleValue(metrics, "test_pool_key_size", { pool: "metered", key: key.key }), key.size)
      }
      assert.strictEqual(metrics.types.get("cistern_pool_acquire_timeouts_total"), "counter")
      assert.strictEqual(metrics.types.get("test_acquire_wait_seconds"), "histogram")
      assert.deepStrictEqual(
        metrics.samples.filter((s) => s.name === "test_acquire_wait_seconds_bucket").map((s) => [s.labels.le, s.value]),
        [
          ["0.001", 1],
          ["0.01", 3],
          ["0.1", 3],
          ["1", 3],
          ["+Inf", 4]
        ]
      )
      assert.strictEqual(sampleValue(metrics, "test_acquire_wait_seconds_count", labels), 4)
      assert.closeTo(sampleValue(metrics, "test_acquire_wait_seconds_sum", labels)!, 2.0085, 1e-9)
      const help = metrics.families.find((f) => f.name === "test_pool_key_size")
      assert.deepStrictEqual([help?.type, help?.help], ["GAUGE", "Items of one key"])
      assert.strictEqual(metrics.types.get("cistern_pool_size"), "gauge")

      const unauthorized = yield* raw(server, { path: "/metrics" })
      assert.strictEqual(unauthorized.status, 401)
      yield* Deferred.succeed(hold, undefined)
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )
})
