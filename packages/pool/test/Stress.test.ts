import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Random, Ref, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { makeResources } from "./utils/resource.js"

describe("KeyedPool under load", () => {
  it.scoped("10,000 leases interrupted at random points leave nothing leased or leaked", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      // Creation yields, so interruptions land while waiting, creating and using.
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.zipRight(Effect.yieldNow(), resources.acquire(key)),
        maxPerKey: 3,
        maxTotal: 8,
        acquireTimeout: "1 minute"
      })
      const keys = ["a", "b", "c", "d", "e"]
      for (let batch = 0; batch < 100; batch++) {
        const fibers = yield* Effect.forEach(Array.from({ length: 100 }), () =>
          Effect.gen(function* () {
            const key = keys[yield* Random.nextIntBetween(0, keys.length)]
            const work = yield* Random.nextIntBetween(0, 5)
            return yield* Effect.fork(pool.use(key, () => Effect.repeatN(Effect.yieldNow(), work)))
          })
        )
        for (const fiber of fibers) {
          yield* Effect.repeatN(Effect.yieldNow(), yield* Random.nextIntBetween(0, 3))
          yield* Fiber.interruptFork(fiber)
        }
        yield* Effect.forEach(fibers, Fiber.await, { discard: true })
      }
      const stats = yield* pool.stats
      assert.strictEqual(stats.inUse, 0)
      assert.strictEqual(stats.creating, 0)
      assert.strictEqual(stats.waiting, 0)
      assert.strictEqual(stats.created - stats.destroyed, stats.size)
      assert.strictEqual(yield* Ref.get(resources.alive), stats.size)
      assert.isAtMost(stats.size, 8)
    })
  )

  it.scoped("100,000 distinct keys touched once leave 0 keys and 0 items after idle expiry", () =>
    Effect.gen(function* () {
      let alive = 0
      const pool = yield* KeyedPool.make({
        acquire: (key: number) =>
          Effect.acquireRelease(
            Effect.sync(() => {
              alive++
              return key
            }),
            () =>
              Effect.sync(() => {
                alive--
              })
          ),
        maxPerKey: 1,
        maxTotal: Number.POSITIVE_INFINITY,
        maxKeys: Number.POSITIVE_INFINITY,
        idleTimeout: "1 minute",
        cleanupInterval: "30 seconds"
      })
      for (let key = 0; key < 100_000; key++) yield* pool.use(key, Effect.succeed)
      const before = yield* pool.stats
      assert.deepStrictEqual([before.keys, before.size, alive], [100_000, 100_000, 100_000])
      yield* TestClock.adjust("90 seconds")
      const after = yield* pool.stats
      assert.deepStrictEqual([after.keys, after.size, after.perKey.length, alive], [0, 0, 0, 0])
    })
  )
})
