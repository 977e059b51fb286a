/**
 * `acquireTimeout` bounds a caller's whole wait, its creation included: the
 * caller stops waiting at its deadline; the creation goes on (bounded by
 * `createTimeout`) and its item serves the next waiter or becomes idle.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Ref, type Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { type Conn, failedWith, makeResources, settle } from "./utils/resource.js"

/** Resources whose connects wait for a gate the test opens (or for ever). */
const gated = Effect.gen(function* () {
  const resources = yield* makeResources
  const gate = yield* Deferred.make<void>()
  const connects = yield* Ref.make(0)
  const acquire = (key: string): Effect.Effect<Conn, unknown, Scope.Scope> =>
    Effect.zipRight(
      Effect.zipRight(
        Ref.update(connects, (n) => n + 1),
        Deferred.await(gate)
      ),
      resources.acquire(key)
    )
  return { resources, gate, connects, acquire }
})

describe("acquireTimeout bounds the whole wait", () => {
  it.scoped("a caller whose creation hangs fails with PoolTimeout at its deadline; the late item becomes idle", () =>
    Effect.gen(function* () {
      const { resources, gate, acquire } = yield* gated
      const pool = yield* KeyedPool.make({ acquire, acquireTimeout: "1 second" })
      const caller = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      assert.deepStrictEqual([(yield* pool.stats).creating, (yield* pool.stats).waiting], [1, 0])
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.join(caller)
      assert.isTrue(failedWith(exit, "PoolTimeout"), "the caller stopped waiting at 1 second")
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.strictEqual((exit.cause.error as { waitedMillis: number }).waitedMillis, 1000)
      }
      assert.strictEqual((yield* pool.stats).creating, 1, "the creation goes on")
      yield* TestClock.adjust("59 seconds")
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.creating, stats.idle, stats.inUse], [0, 1, 0], "its item is idle")
      assert.strictEqual((yield* pool.use("a", Effect.succeed)).id, 1, "and serves the next caller")
      assert.strictEqual(yield* Ref.get(resources.created), 1)
    })
  )

  it.scoped("a creation that outlives its caller serves the next waiter", () =>
    Effect.gen(function* () {
      const { gate, connects, acquire } = yield* gated
      const pool = yield* KeyedPool.make({ acquire, maxPerKey: 1, acquireTimeout: "1 second" })
      const first = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("900 millis")
      const second = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      assert.strictEqual((yield* pool.stats).waiting, 1)
      yield* TestClock.adjust("100 millis")
      assert.isTrue(failedWith(yield* Fiber.join(first), "PoolTimeout"))
      yield* Deferred.succeed(gate, undefined)
      const served = yield* Fiber.join(second)
      assert.isTrue(Exit.isSuccess(served) && served.value.id === 1, "the late item went to the next waiter")
      assert.strictEqual(yield* Ref.get(connects), 1, "no second connect: the key was at its limit")
    })
  )

  it.scoped("createTimeout still bounds a creation nobody waits for any more", () =>
    Effect.gen(function* () {
      const { resources, acquire } = yield* gated
      const pool = yield* KeyedPool.make({ acquire, acquireTimeout: "1 second", createTimeout: "5 seconds" })
      const caller = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("1 second")
      assert.isTrue(failedWith(yield* Fiber.join(caller), "PoolTimeout"))
      yield* TestClock.adjust("4 seconds")
      yield* settle
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.creating, stats.size, stats.failures], [0, 0, 1])
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
    })
  )

  it.scoped("a waiter is served by a returned item while its own creation runs; that creation's item goes idle", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const slow = yield* Deferred.make<void>()
      let n = 0
      const acquire = (key: string) =>
        Effect.zipRight(++n === 2 ? Deferred.await(slow) : Effect.void, resources.acquire(key))
      const pool = yield* KeyedPool.make({ acquire, maxPerKey: 2, acquireTimeout: "10 seconds" })
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(pool.use("a", () => Deferred.await(release)))
      yield* settle
      const caller = yield* Effect.fork(pool.use("a", (c) => Effect.succeed(c.id)))
      yield* settle
      assert.strictEqual((yield* pool.stats).creating, 1, "the caller's creation hangs")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      assert.strictEqual(yield* Fiber.join(caller), 1, "served by the returned item at once")
      yield* Deferred.succeed(slow, undefined)
      yield* settle
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.size, stats.idle, stats.creating, stats.waiting], [2, 2, 0, 0])
    })
  )

  it.scoped("a creation that fails while its caller waits fails that caller with the resource's own error", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      yield* Ref.set(resources.failing, new Set(["a"]))
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, acquireTimeout: "1 second" })
      const exit = yield* Effect.exit(pool.use("a", Effect.succeed))
      assert.isTrue(failedWith(exit, "ConnectError"))
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.creating, stats.waiting, stats.failures], [0, 0, 1])
    })
  )
})
