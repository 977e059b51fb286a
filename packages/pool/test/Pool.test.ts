import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Ref, Stream, TestClock } from "effect"
import { KeyedPool, Pool } from "../src/index.js"
import { failedWith, makeResources, settle } from "./utils/resource.js"

describe("Pool", () => {
  it.scoped("leases through use, get and stream, never more than max at once", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* Pool.make({ acquire: resources.acquire("db"), max: 3, name: "db" })
      const inFlight = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      yield* Effect.all(
        Array.from({ length: 20 }, () =>
          pool.use(() =>
            Effect.gen(function* () {
              const n = yield* Ref.updateAndGet(inFlight, (x) => x + 1)
              yield* Ref.update(peak, (p) => Math.max(p, n))
              yield* Effect.yieldNow()
              yield* Ref.update(inFlight, (x) => x - 1)
            })
          )
        ),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(yield* Ref.get(peak), 3)
      const conn = yield* Effect.scoped(pool.get)
      assert.strictEqual(conn.key, "db")
      const ids = yield* Stream.runCollect(pool.stream((c) => Stream.make(c.id)))
      assert.strictEqual(Chunk.size(ids), 1)
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.name, stats.size, stats.inUse, stats.perKey[0].key], ["db", 3, 0, "db"])
    })
  )

  it.scoped("times out with PoolTimeout and invalidates like the keyed pool", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* Pool.make({ acquire: resources.acquire("db"), max: 1, acquireTimeout: "1 second" })
      const holder = yield* Effect.fork(pool.use(() => Effect.never))
      yield* settle
      const late = yield* Effect.fork(Effect.exit(pool.use(Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.isTrue(failedWith(yield* Fiber.join(late), "PoolTimeout"))
      yield* Fiber.interrupt(holder)
      const conn = yield* pool.use(Effect.succeed)
      yield* pool.invalidate(conn)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [conn.id])
    })
  )

  it.scoped("creates minIdle items right away", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* Pool.make({ acquire: resources.acquire("db"), max: 5, minIdle: 2 })
      yield* settle
      assert.deepStrictEqual([(yield* pool.stats).idle, yield* Ref.get(resources.alive)], [2, 2])
    })
  )

  it.scoped("KeyedPool.prewarm fills a key up to the count, within its limit", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxPerKey: 3 })
      yield* pool.prewarm("a", 2)
      yield* pool.prewarm("a", 2)
      assert.strictEqual((yield* pool.stats).idle, 2)
      const exit = yield* Effect.exit(pool.prewarm("b", 0))
      assert.isTrue(Exit.isSuccess(exit))
      assert.strictEqual((yield* pool.stats).keys, 1)
    })
  )
})
