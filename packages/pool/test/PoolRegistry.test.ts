import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope, TestClock } from "effect"
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
})
