/**
 * The engine counts time from when the pool started (small integers, cheap
 * to store per item and key), so a pool made at a real epoch must still
 * report epoch milliseconds and keep its deadlines, idle expiry and circuit
 * timing. `TestClock` starts at 0, where both clocks agree: these tests start
 * it at a real date first.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Ref, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { failedWith, makeResources, settle } from "./utils/resource.js"

const epoch = 1_764_000_000_000

describe("a pool started at a real epoch", () => {
  it.scoped("reports epoch times for items, checks and circuits", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(epoch)
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        describeKey: (key) => key,
        breaker: { failures: 1, reset: "1 minute" },
        createBackoff: false,
        validate: () => Effect.fail(new Error("stale")),
        validateAfter: "1 second"
      })
      yield* TestClock.adjust("2 seconds")
      yield* pool.use("a", Effect.succeed)
      yield* TestClock.adjust("3 seconds")
      const [item] = yield* pool.items
      assert.deepStrictEqual(
        [item.createdAt, item.lastUsed, item.ageMillis, item.idleMillis],
        [epoch + 2000, epoch + 2000, 3000, 3000]
      )
      const key = (yield* pool.stats).perKey[0]
      assert.deepStrictEqual([key.createdAt, key.lastUsed], [epoch + 2000, epoch + 2000])

      // A failed validation goes into the key's history, at the epoch time it happened.
      yield* Effect.exit(pool.use("a", Effect.succeed))
      const history = (yield* pool.stats).perKey[0].health.history
      assert.deepStrictEqual(
        history.map((r) => [r.kind, r.ok, r.at]),
        [["validate", false, epoch + 5000]]
      )

      // A failed creation opens key b's circuit: its transition and retry time are epoch times.
      yield* Ref.set(resources.failing, new Set(["b"]))
      yield* Effect.exit(pool.use("b", Effect.succeed))
      const b = (yield* pool.stats).perKey.find((k) => k.key === "b")!.health
      assert.deepStrictEqual(
        [b.breaker, b.retryAt, b.transitions.map((t) => [t.to, t.at])],
        ["open", epoch + 5000 + 60_000, [["open", epoch + 5000]]]
      )
    })
  )

  it.scoped("times out waiters at their deadline and expires idle items", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(epoch)
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        maxPerKey: 1,
        acquireTimeout: "1 second",
        idleTimeout: "1 minute",
        cleanupInterval: "10 seconds"
      })
      const holder = yield* Effect.fork(pool.use("a", () => Effect.never))
      yield* settle
      const waiter = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("999 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(waiter)), "still waiting just before its deadline")
      yield* TestClock.adjust("1 millis")
      const exit = yield* Fiber.join(waiter)
      assert.isTrue(failedWith(exit, "PoolTimeout"), "the waiter stopped waiting at its deadline")
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.strictEqual((exit.cause.error as { waitedMillis: number }).waitedMillis, 1000)
      }
      yield* Fiber.interrupt(holder)
      assert.strictEqual((yield* pool.stats).idle, 1)
      yield* TestClock.adjust("50 seconds")
      assert.strictEqual((yield* pool.stats).idle, 1, "idle for less than idleTimeout: kept")
      yield* TestClock.adjust("20 seconds")
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.size, stats.keys], [0, 0], "expired and dropped within one cleanupInterval")
    })
  )
})
