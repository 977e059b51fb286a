import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, FastCheck as fc, Option, Ref, Schedule, TestClock } from "effect"
import * as HealthMonitor from "../src/HealthMonitor.js"
import type * as VectorPool from "../src/VectorPool.js"

const stats = (requests: number): VectorPool.Stats => ({
  poolSize: 10,
  open: 10,
  available: 10,
  active: 0,
  waiting: 0,
  created: 10,
  destroyed: 0,
  failedConnections: 0,
  timeouts: 0,
  requests
})

/** A probe whose answers are scripted: "up" answers a version, "down" fails, "hang" never answers. */
const scripted = (script: Ref.Ref<"up" | "down" | "hang">) =>
  Effect.flatMap(Ref.get(script), (state) =>
    state === "up"
      ? Effect.succeed("15.18")
      : state === "down"
        ? Effect.fail(new Error("connection refused"))
        : Effect.never
  )

/** Waits (without moving the clock) until the monitor's fiber has recorded its first check. */
const firstCheck = (monitor: HealthMonitor.HealthMonitor) =>
  Effect.yieldNow().pipe(Effect.zipRight(monitor.latest), Effect.repeat({ until: Option.isSome }))

describe("HealthMonitor", () => {
  it.scoped("checks at once, then once per interval of the schedule", () =>
    Effect.gen(function* () {
      const script = yield* Ref.make<"up" | "down" | "hang">("up")
      const monitor = yield* HealthMonitor.make({
        probe: scripted(script),
        stats: Effect.succeed(stats(0)),
        schedule: Schedule.spaced("10 seconds")
      })
      yield* firstCheck(monitor)
      assert.strictEqual((yield* monitor.history()).length, 1)
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual((yield* monitor.history()).length, 1, "not before the interval")
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* monitor.history()).length, 2)
      yield* TestClock.adjust("30 seconds")
      const history = yield* monitor.history()
      assert.deepStrictEqual(
        history.map((c) => c.at),
        [0, 10_000, 20_000, 30_000, 40_000]
      )
      assert.isTrue(history.every((c) => c.status === "healthy" && c.version === "15.18"))
    })
  )

  it.scoped("records an outage: unhealthy with the error while the probe fails, healthy again after", () =>
    Effect.gen(function* () {
      const script = yield* Ref.make<"up" | "down" | "hang">("up")
      const requests = yield* Ref.make(0)
      const monitor = yield* HealthMonitor.make({
        probe: scripted(script),
        stats: Effect.map(
          Ref.updateAndGet(requests, (n) => n + 1),
          stats
        ),
        schedule: Schedule.spaced("1 second")
      })
      yield* firstCheck(monitor)
      yield* TestClock.adjust("1 second")
      yield* Ref.set(script, "down")
      yield* TestClock.adjust("2 seconds")
      yield* Ref.set(script, "up")
      yield* TestClock.adjust("1 second")
      const history = yield* monitor.history()
      assert.deepStrictEqual(
        history.map((c) => c.status),
        ["healthy", "healthy", "unhealthy", "unhealthy", "healthy"]
      )
      assert.strictEqual(history[2].version, null)
      assert.strictEqual(history[2].error, "connection refused")
      assert.deepStrictEqual(
        history.map((c) => c.stats.requests),
        [1, 2, 3, 4, 5],
        "each result carries the pool stats of its moment"
      )
      assert.deepStrictEqual(
        Option.map(yield* monitor.latest, (c) => c.status),
        Option.some("healthy")
      )
    })
  )

  it.scoped("a probe that does not answer within the timeout is an unhealthy result", () =>
    Effect.gen(function* () {
      const script = yield* Ref.make<"up" | "down" | "hang">("hang")
      const monitor = yield* HealthMonitor.make({
        probe: scripted(script),
        stats: Effect.succeed(stats(0)),
        schedule: Schedule.spaced("10 seconds"),
        timeout: "3 seconds"
      })
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual((yield* monitor.history()).length, 0, "still waiting")
      yield* TestClock.adjust("1 second")
      const [check] = yield* monitor.history()
      assert.strictEqual(check.status, "unhealthy")
      assert.strictEqual(check.millis, 3_000)
      assert.include(check.error, "no answer within 3s")
    })
  )

  it.scoped("checkNow records a check outside the schedule", () =>
    Effect.gen(function* () {
      const script = yield* Ref.make<"up" | "down" | "hang">("up")
      const monitor = yield* HealthMonitor.make({
        probe: scripted(script),
        stats: Effect.succeed(stats(0)),
        schedule: Schedule.spaced("1 hour")
      })
      yield* firstCheck(monitor)
      yield* Ref.set(script, "down")
      const fiber = yield* Effect.fork(monitor.checkNow)
      const check = yield* Fiber.join(fiber)
      assert.strictEqual(check.status, "unhealthy")
      assert.deepStrictEqual(
        (yield* monitor.history()).map((c) => c.status),
        ["healthy", "unhealthy"]
      )
    })
  )

  it.scoped("keeps the last 100 results by default, each with the version and the pool stats of its moment", () =>
    Effect.gen(function* () {
      const script = yield* Ref.make<"up" | "down" | "hang">("up")
      const requests = yield* Ref.make(0)
      const monitor = yield* HealthMonitor.make({
        probe: scripted(script),
        // Each check sees the stats of its own moment: one more request each time.
        stats: Effect.map(
          Ref.updateAndGet(requests, (n) => n + 1),
          stats
        ),
        schedule: Schedule.spaced("1 second")
      })
      yield* firstCheck(monitor)
      yield* TestClock.adjust("149 seconds")
      const history = yield* monitor.history()
      assert.strictEqual(history.length, 100)
      assert.deepStrictEqual(
        history.map((c) => [c.at, c.stats.requests, c.version]),
        Array.from({ length: 100 }, (_, i) => [(50 + i) * 1000, 51 + i, "15.18"])
      )
    })
  )

  it.effect.prop(
    "keeps the last `keep` results, oldest first, whatever the number of checks",
    [fc.integer({ min: 1, max: 10 }), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 12 })],
    ([keep, rounds, limit]) =>
      Effect.scoped(
        Effect.gen(function* () {
          const script = yield* Ref.make<"up" | "down" | "hang">("up")
          const monitor = yield* HealthMonitor.make({
            probe: scripted(script),
            stats: Effect.succeed(stats(0)),
            schedule: Schedule.spaced("1 second"),
            keep
          })
          yield* TestClock.adjust(`${rounds} seconds`)
          const all = yield* monitor.history()
          const checks = rounds + 1
          const kept = Math.min(checks, keep)
          assert.strictEqual(all.length, kept)
          assert.deepStrictEqual(
            all.map((c) => c.at),
            Array.from({ length: kept }, (_, i) => (checks - kept + i) * 1000)
          )
          const last = yield* monitor.history(limit)
          assert.deepStrictEqual(last, all.slice(Math.max(0, all.length - limit)))
        })
      ),
    { fastCheck: { numRuns: 30 } }
  )
})
