/**
 * Limits per tenant across keys: `group(key)` with `maxPerGroup`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Metric, MetricLabel, Ref, TestClock } from "effect"
import { KeyedPool, PoolMetrics } from "../src/index.js"
import { failedWith, makeResources, settle } from "./utils/resource.js"

/** Keys are `user/upstream`; the group is the user. */
const user = (key: string) => key.split("/")[0]

describe("groups", () => {
  it.scoped("a group's limit holds across its keys; other groups are not affected", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        group: user,
        maxPerGroup: 2,
        maxPerKey: 5,
        acquireTimeout: "1 second"
      })
      const hold = yield* Deferred.make<void>()
      yield* Effect.fork(pool.use("alice/db", () => Deferred.await(hold)))
      yield* Effect.fork(pool.use("alice/llm", () => Deferred.await(hold)))
      yield* settle
      const third = yield* Effect.fork(Effect.exit(pool.use("alice/mcp", Effect.succeed)))
      const bob = yield* pool.use("bob/db", (c) => Effect.succeed(c.key))
      assert.strictEqual(bob, "bob/db", "another tenant is served at once")
      yield* settle
      const stats = yield* pool.stats
      assert.deepStrictEqual(
        stats.perGroup?.map((g) => [g.group, g.size, g.max]),
        [
          ["alice", 2, 2],
          ["bob", 1, 2]
        ]
      )
      assert.strictEqual(stats.waiting, 1)
      yield* TestClock.adjust("1 second")
      assert.isTrue(failedWith(yield* Fiber.join(third), "PoolTimeout"))
      yield* Deferred.succeed(hold, undefined)
    })
  )

  it.scoped("a group at its limit evicts its own oldest idle item (of any key) before a caller waits", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, group: user, maxPerGroup: 2 })
      const first = yield* pool.use("alice/db", Effect.succeed)
      yield* TestClock.adjust("1 second")
      yield* pool.use("alice/llm", Effect.succeed)
      yield* pool.use("bob/db", Effect.succeed)
      const third = yield* pool.use("alice/mcp", Effect.succeed)
      assert.strictEqual(third.key, "alice/mcp")
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [first.id], "alice's oldest idle item went")
      const stats = yield* pool.stats
      assert.deepStrictEqual(
        stats.perGroup?.map((g) => [g.group, g.size, g.idle]),
        [
          ["alice", 2, 2],
          ["bob", 1, 1]
        ]
      )
    })
  )

  it.scoped("a returned item makes room for an older waiter of another key of its group", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, group: user, maxPerGroup: 1 })
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(pool.use("alice/db", () => Deferred.await(release)))
      yield* settle
      const waiter = yield* Effect.fork(pool.use("alice/llm", (c) => Effect.succeed(c.key)))
      yield* settle
      assert.strictEqual((yield* pool.stats).waiting, 1)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      assert.strictEqual(yield* Fiber.join(waiter), "alice/llm")
      assert.strictEqual((yield* pool.stats).perGroup?.[0].size, 1)
    })
  )

  it.scoped("with the total exhausted, a group at its limit does not hold up another group's waiter", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        group: user,
        maxPerGroup: (g) => (g === "alice" ? 2 : 5),
        maxTotal: 3
      })
      const release = yield* Deferred.make<void>()
      const holders = yield* Effect.forEach(["alice/db", "alice/llm", "bob/db"], (k) =>
        Effect.fork(pool.use(k, () => Deferred.await(release)))
      )
      yield* settle
      // alice waits first (at her group limit and the total), bob second (at the total only).
      const alice = yield* Effect.fork(pool.use("alice/mcp", (c) => Effect.succeed(c.key)))
      yield* settle
      const bob = yield* Effect.fork(pool.use("bob/llm", (c) => Effect.succeed(c.key)))
      yield* settle
      // bob/db's lease ends: the freed total slot goes to bob, not to alice, who is still at her own limit.
      yield* Fiber.interrupt(holders[2])
      assert.strictEqual(yield* Fiber.join(bob), "bob/llm")
      assert.isNull(alice.unsafePoll())
      yield* Deferred.succeed(release, undefined)
      assert.strictEqual(yield* Fiber.join(alice), "alice/mcp")
    })
  )

  it.scoped(
    "groups appear in metrics under the key label cap: the first metricsPerKey own a label, the rest are other",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({
          acquire: resources.acquire,
          group: user,
          metricsPerKey: 1,
          name: "groups-metrics"
        })
        yield* pool.use("alice/db", Effect.succeed)
        yield* Effect.scoped(Effect.all([pool.get("bob/db"), pool.get("carol/db")]))
        yield* pool.stats // samples the gauges
        const gauge = (group: string) =>
          Effect.map(
            Metric.value(
              Metric.taggedWithLabels(PoolMetrics.groupSize, [
                MetricLabel.make("pool", "groups-metrics"),
                MetricLabel.make("group", group)
              ])
            ),
            (s) => s.value
          )
        assert.deepStrictEqual([yield* gauge("alice"), yield* gauge("other"), yield* gauge("bob")], [1, 2, 0])
      })
  )

  it.effect("maxPerGroup is validated", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.scoped(KeyedPool.make({ acquire: () => Effect.succeed(1), group: user, maxPerGroup: 0 }))
      )
      assert.isTrue(exit._tag === "Failure" && String(exit.cause).includes("maxPerGroup"))
    })
  )
})
