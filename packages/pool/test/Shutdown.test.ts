import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Ref, Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { failedWith, makeResources, settle } from "./utils/resource.js"

describe("KeyedPool shutdown", () => {
  it.effect("refuses new callers and releases waiters with PoolClosed", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const scope = yield* Scope.make()
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxPerKey: 1, drainTimeout: 0 }).pipe(
        Scope.extend(scope)
      )
      const holder = yield* Effect.fork(pool.use("a", () => Effect.never))
      yield* settle
      const waiter = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* Scope.close(scope, Exit.void)
      assert.isTrue(failedWith(yield* Fiber.join(waiter), "PoolClosed"))
      assert.isTrue(failedWith(yield* Effect.exit(pool.use("a", Effect.succeed)), "PoolClosed"))
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(holder)))
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
    })
  )

  it.effect("gives leases drainTimeout to come back before interrupting their holders", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const scope = yield* Scope.make()
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, drainTimeout: "10 seconds" }).pipe(
        Scope.extend(scope)
      )
      const finishes = yield* Deferred.make<void>()
      const polite = yield* Effect.fork(pool.use("a", () => Deferred.await(finishes)))
      const stubborn = yield* Effect.fork(pool.use("b", () => Effect.never))
      yield* settle
      yield* pool.use("c", Effect.succeed) // idle: destroyed at once
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle
      assert.strictEqual(yield* Ref.get(resources.alive), 2, "idle item destroyed, leases still out")
      yield* Deferred.succeed(finishes, undefined)
      yield* Fiber.join(polite)
      assert.strictEqual(yield* Ref.get(resources.alive), 1, "returned lease destroyed")
      yield* TestClock.adjust("9 seconds")
      assert.isNull(stubborn.unsafePoll())
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      assert.isTrue(Exit.isInterrupted(yield* Fiber.await(stubborn)))
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
      const closed = yield* Ref.get(resources.closed)
      assert.strictEqual(new Set(closed).size, closed.length, "every finalizer ran once")
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.closed, stats.size, stats.created, stats.destroyed], [true, 0, 3, 3])
    })
  )

  it.effect("drainTimeout holds when the scope closes uninterruptibly (Effect.scoped, layers)", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const closing = yield* Effect.fork(
        Effect.scoped(
          Effect.gen(function* () {
            const pool = yield* KeyedPool.make({ acquire: resources.acquire, drainTimeout: "100 millis" })
            yield* Effect.forkDaemon(pool.use("a", () => Effect.never))
            yield* settle
          })
        )
      )
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(closing)
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
    })
  )

  it.effect("a lease in the pool's own scope is released before the pool closes", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      yield* Effect.scoped(
        Effect.gen(function* () {
          const pool = yield* KeyedPool.make({ acquire: resources.acquire })
          yield* pool.get("a")
          yield* pool.get("b")
        })
      )
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
    })
  )
})
