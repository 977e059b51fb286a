import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Logger, Metric, MetricLabel, Ref, Scope, TestClock } from "effect"
import { KeyedPool, PoolMetrics } from "../src/index.js"
import { makeResources, settle } from "./utils/resource.js"

const labels = (pool: string, extra: Record<string, string> = {}) => [
  MetricLabel.make("pool", pool),
  ...Object.entries(extra).map(([k, v]) => MetricLabel.make(k, v))
]

const count = (metric: Metric.Metric.Counter<number>, tags: ReadonlyArray<MetricLabel.MetricLabel>) =>
  Effect.map(Metric.value(Metric.taggedWithLabels(metric, tags)), (s) => s.count)

const gauge = (metric: Metric.Metric.Gauge<number>, tags: ReadonlyArray<MetricLabel.MetricLabel>) =>
  Effect.map(Metric.value(Metric.taggedWithLabels(metric, tags)), (s) => s.value)

describe("PoolMetrics", () => {
  it.scoped("counters and gauges agree with stats, destroyed counts by reason", () =>
    Effect.gen(function* () {
      const name = "metrics-agree"
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        name,
        acquire: resources.acquire,
        maxPerKey: 1,
        acquireTimeout: "1 second",
        idleTimeout: "1 minute",
        cleanupInterval: "1 minute"
      })
      const conn = yield* pool.use("a", Effect.succeed)
      yield* pool.use("b", Effect.succeed)
      yield* pool.invalidate(conn)
      const holder = yield* Effect.fork(pool.use("b", () => Effect.never))
      yield* settle
      const waiter = yield* Effect.fork(Effect.exit(pool.use("b", Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(waiter)
      yield* Fiber.interrupt(holder)
      yield* pool.use("c", Effect.succeed)
      yield* TestClock.adjust("2 minutes")
      const stats = yield* pool.stats
      const tags = labels(name)
      assert.strictEqual(yield* count(PoolMetrics.created, tags), stats.created)
      assert.strictEqual(yield* count(PoolMetrics.acquireTimeouts, tags), stats.timeouts)
      assert.strictEqual(yield* count(PoolMetrics.destroyed, labels(name, { reason: "invalidated" })), 1)
      assert.strictEqual(yield* count(PoolMetrics.destroyed, labels(name, { reason: "idle" })), 2)
      assert.strictEqual(stats.destroyed, 3)
      assert.strictEqual(yield* gauge(PoolMetrics.size, tags), stats.size)
      assert.strictEqual(yield* gauge(PoolMetrics.keys, tags), stats.keys)
      const waits = yield* Metric.value(Metric.taggedWithLabels(PoolMetrics.acquireWait, tags))
      assert.strictEqual(
        waits.count,
        3,
        "the three callers that created record their wait; one served from idle does not"
      )
      assert.isBelow(waits.max, 0.001, "nobody waited on the clock")
      const leases = yield* Metric.value(Metric.taggedWithLabels(PoolMetrics.leaseDuration, tags))
      assert.strictEqual(leases.count, 4)
      assert.strictEqual(leases.max, 1, "the interrupted holder leased for a second")
    })
  )

  it.scoped("labels the first metricsPerKey keys and counts the rest as other", () =>
    Effect.gen(function* () {
      const name = "metrics-per-key"
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        name,
        acquire: resources.acquire,
        metricsPerKey: 2,
        describeKey: (k) => k
      })
      for (const key of ["a", "b", "c", "d", "a"]) yield* pool.use(key, Effect.succeed)
      assert.strictEqual(yield* count(PoolMetrics.created, labels(name, { key: "a" })), 1)
      assert.strictEqual(yield* count(PoolMetrics.created, labels(name, { key: "b" })), 1)
      assert.strictEqual(yield* count(PoolMetrics.created, labels(name, { key: "other" })), 2)
      yield* pool.stats
      assert.strictEqual(yield* gauge(PoolMetrics.idle, labels(name, { key: "a" })), 1)
    })
  )

  it.scoped("spans cover waits and creations, logs name the key as described", () =>
    Effect.gen(function* () {
      const spans = yield* Ref.make<ReadonlyArray<string>>([])
      const logs = yield* Ref.make<ReadonlyArray<string>>([])
      const logger = Logger.make(({ message }) => {
        Effect.runSync(Ref.update(logs, (l) => [...l, String(message)]))
      })
      const scope = yield* Effect.scope
      // Where a creation runs: its own span, and the waiting caller's above it.
      const spanPath = Effect.flatMap(Effect.currentSpan, (span) => {
        const parent = span.parent._tag === "Some" && span.parent.value._tag === "Span" ? span.parent.value.name : "-"
        return Ref.update(spans, (s) => [...s, `${parent} > ${span.name}`])
      })
      yield* Effect.gen(function* () {
        const pool = yield* KeyedPool.make({
          name: "traced",
          acquire: (key: string) =>
            key === "down" ? Effect.fail(new Error("ECONNREFUSED")) : Effect.as(Effect.orDie(spanPath), { key }),
          maxPerKey: 1,
          createBackoff: false,
          spans: true,
          describeKey: (k) => `user:${k}`
        }).pipe(Scope.extend(scope))
        const holder = yield* Effect.fork(pool.use("a", (conn) => Effect.zipRight(pool.invalidate(conn), Effect.never)))
        yield* settle
        const waiter = yield* Effect.fork(pool.use("a", Effect.succeed))
        yield* settle
        yield* Fiber.interrupt(holder)
        yield* Fiber.join(waiter)
        yield* Effect.exit(pool.use("down", Effect.succeed))
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      assert.deepStrictEqual(yield* Ref.get(spans), ["- > KeyedPool.acquire", "KeyedPool.get > KeyedPool.acquire"])
      const lines = yield* Ref.get(logs)
      assert.isTrue(
        lines.some((l) => l.includes("creating an item of key user:down failed")),
        lines.join("\n")
      )
    })
  )
})
