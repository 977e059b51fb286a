import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Scope, TestClock } from "effect"
import { KeyedPool, Pool, PoolRegistry } from "../src/index.js"

describe("PoolRegistry", () => {
  it.effect("lists named pools while their scopes are open and forgets them after", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.PoolRegistry
      const scope = yield* Scope.make()
      const keyed = yield* KeyedPool.make({ name: "upstreams", acquire: (k: string) => Effect.succeed(k) }).pipe(
        Scope.extend(scope)
      )
      yield* Pool.make({ name: "db", acquire: Effect.succeed(1) }).pipe(Scope.extend(scope))
      yield* KeyedPool.make({ acquire: (k: string) => Effect.succeed(k) }).pipe(Scope.extend(scope))
      assert.deepStrictEqual(
        (yield* registry.list).map((e) => e.name),
        ["upstreams", "db"],
        "unnamed pools stay out"
      )
      yield* keyed.use("a", Effect.succeed)
      yield* TestClock.adjust("1 second")
      const entry = Option.getOrThrow(yield* registry.get("upstreams"))
      assert.strictEqual((yield* entry.stats).idle, 1)
      const [item] = yield* entry.items
      assert.deepStrictEqual([item.state, item.idleMillis, item.ageMillis], ["idle", 1000, 1000])
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* registry.list, [])
    }).pipe(Effect.provide(PoolRegistry.layer))
  )

  it.effect("keeps a closing pool listed, as closed, until it has drained", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.PoolRegistry
      const scope = yield* Scope.make()
      const pool = yield* KeyedPool.make({ name: "draining", acquire: (k: string) => Effect.succeed(k) }).pipe(
        Scope.extend(scope)
      )
      const release = yield* Deferred.make<void>()
      yield* Effect.fork(pool.use("a", () => Deferred.await(release)))
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* Effect.repeatN(Effect.yieldNow(), 20)
      const entry = Option.getOrThrow(yield* registry.get("draining"))
      assert.isTrue((yield* entry.stats).closed)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(closing)
      assert.isTrue(Option.isNone(yield* registry.get("draining")))
    }).pipe(Effect.provide(PoolRegistry.layer))
  )
})
