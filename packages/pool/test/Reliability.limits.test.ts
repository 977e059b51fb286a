/**
 * Regressions: limits, eviction, pre-warming and the `minIdlePerKey` floor.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Ref, Scope, TestClock } from "effect"
import { KeyedPool, Pool } from "../src/index.js"
import { type Conn, makeResources, settle } from "./utils/resource.js"

/** A connection error as Node reports it. */
const reset = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })

const succeeded = (fiber: Fiber.RuntimeFiber<unknown, unknown>): boolean => {
  const exit = fiber.unsafePoll()
  return exit !== null && Exit.isSuccess(exit)
}

describe("limits and eviction", () => {
  it.scoped(
    "a waiter held back by createConcurrency evicts another key's idle item when a creation ends (it used to time out while the total was full of idle items)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const gate = yield* Deferred.make<void>()
        const pool = yield* KeyedPool.make({
          acquire: (key: string) =>
            key === "a" ? Effect.zipRight(Deferred.await(gate), resources.acquire(key)) : resources.acquire(key),
          maxTotal: 2,
          createConcurrency: 1,
          acquireTimeout: "5 seconds"
        })
        const idleB = yield* pool.use("b", Effect.succeed)
        const hold = yield* Deferred.make<void>()
        const first = yield* Effect.fork(pool.use("a", () => Deferred.await(hold)))
        yield* settle
        const second = yield* Effect.fork(pool.use("a", Effect.succeed))
        yield* settle
        assert.strictEqual((yield* pool.stats).waiting, 1, "held back by createConcurrency")
        yield* Deferred.succeed(gate, undefined)
        yield* settle
        assert.isTrue(succeeded(second), "served without waiting for the first lease")
        assert.deepStrictEqual(yield* Ref.get(resources.closed), [idleB.id])
        yield* Deferred.succeed(hold, undefined)
        yield* Fiber.join(first)
      })
  )

  it.scoped(
    "maxKeys holds when the evicted key remembers a failure (the evicted key used to linger and still count)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({
          acquire: resources.acquire,
          maxKeys: 2,
          validate: (c: Conn) => (c.id === 1 ? Effect.fail(reset()) : Effect.void),
          describeKey: (k) => k
        })
        yield* pool.use("a", Effect.succeed)
        // Item 1 fails validation: key "a" remembers a broken item, and keeps item 2 idle.
        assert.strictEqual((yield* pool.use("a", Effect.succeed)).id, 2)
        yield* TestClock.adjust("1 second")
        yield* pool.use("b", Effect.succeed)
        yield* pool.use("c", Effect.succeed)
        const stats = yield* pool.stats
        assert.deepStrictEqual(
          stats.perKey.map((k) => k.key),
          ["b", "c"]
        )
        assert.strictEqual(stats.keys, 2)
      })
  )

  it.scoped("prewarm above maxPerKey stops at the limit at once (it used to wait out acquireTimeout and fail)", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxPerKey: 2, acquireTimeout: "1 second" })
      const warming = yield* Effect.fork(pool.prewarm("a", 5))
      yield* settle
      assert.isTrue(succeeded(warming))
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.idle, stats.inUse, stats.timeouts], [2, 0, 0])
    })
  )

  it.effect(
    "a floor above its limit is rejected at construction, naming the options (it used to be accepted and pre-warming failed later)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* Effect.exit(
          Effect.scoped(Pool.make({ acquire: resources.acquire("db"), max: 2, minIdle: 5 }))
        )
        assert.isTrue(Exit.isFailure(pool) && Cause.isDie(pool.cause))
        assert.include(
          Cause.pretty((pool as Exit.Failure<never, never>).cause),
          "minIdle = 5 is invalid: expected at most max (2)"
        )
        const keyed = yield* Effect.exit(
          Effect.scoped(KeyedPool.make({ acquire: resources.acquire, maxPerKey: 2, minIdlePerKey: 3 }))
        )
        assert.isTrue(Exit.isFailure(keyed) && Cause.isDie(keyed.cause))
        assert.include(Cause.pretty((keyed as Exit.Failure<never, never>).cause), "minIdlePerKey = 3")
      })
  )
})

describe("pre-warm and the idle floor", () => {
  it.scoped(
    "pre-warm never holds leases: a caller's second get is served while minIdle fills (Pool.make({ max: 2, minIdle: 2 }) used to deadlock with its callers)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* Pool.make({ acquire: resources.acquire("db"), max: 2, minIdle: 2 })
        const leases = yield* Scope.make()
        yield* pool.get.pipe(Scope.extend(leases)) // before the background pre-warm runs
        yield* settle
        const second = yield* Effect.fork(pool.get.pipe(Scope.extend(leases)))
        yield* settle
        assert.isTrue(succeeded(second), "served at once")
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.size, stats.inUse, stats.timeouts], [2, 2, 0])
        yield* Scope.close(leases, Exit.void)
        assert.strictEqual((yield* pool.stats).idle, 2)
      })
  )

  it.scoped("KeyedPool.prewarm creates only the missing items and never competes with callers for them", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxPerKey: 3 })
      const held = yield* Scope.make()
      yield* pool.get("a").pipe(Scope.extend(held))
      yield* pool.prewarm("a", 3)
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.size, stats.inUse, stats.idle, stats.created], [3, 1, 2, 3])
      yield* Scope.close(held, Exit.void)
    })
  )

  it.scoped(
    "after invalidate the key is refilled to minIdlePerKey at once, with no cleanup round (with idleTimeout infinity it used to stay below its floor for good)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({
          acquire: resources.acquire,
          minIdlePerKey: 2,
          idleTimeout: Duration.infinity
        })
        yield* pool.prewarm("a")
        const [one] = yield* Effect.scoped(pool.get("a").pipe(Effect.map((c) => [c])))
        yield* pool.invalidate(one)
        yield* settle
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.idle, stats.created, stats.destroyed], [2, 3, 1])
      })
  )

  it.scoped("a failed pre-warm is retried after the creation backoff (it used to be given up for good)", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      yield* Ref.set(resources.failing, new Set(["db"]))
      const pool = yield* Pool.make({
        acquire: resources.acquire("db"),
        max: 2,
        minIdle: 1,
        idleTimeout: Duration.infinity
      })
      yield* settle
      assert.deepStrictEqual([(yield* pool.stats).idle, (yield* pool.stats).failures], [0, 1])
      yield* Ref.set(resources.failing, new Set())
      yield* TestClock.adjust("100 millis") // the first backoff is at most 100 ms
      yield* settle
      assert.strictEqual((yield* pool.stats).idle, 1)
    })
  )
})
