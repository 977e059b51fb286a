import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Schema, Scope, TestClock } from "effect"
import { KeyedPool, Pool, PoolRegistry } from "../src/index.js"

/** A budget's stats as a `ClusterBudget` registers them. */
const budgetStats: PoolRegistry.BudgetStats = {
  name: "upstream",
  instanceId: "host-1",
  limit: 100,
  used: 42,
  held: 7,
  waiters: 1,
  wantsElsewhere: 2,
  over: 0,
  state: "learning",
  granted: 9,
  released: 2,
  exhausted: 1,
  unavailable: 0,
  reclaimed: 3,
  leasesLost: 0,
  pendingReleases: 0,
  mode: "local-share",
  offline: 2,
  instances: 3,
  failOpen: 4,
  reasserted: 2
}

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

  it.effect("lists budgets while their scopes are open, each registration its own entry", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.PoolRegistry
      const stats = (instanceId: string, held: number): PoolRegistry.BudgetStats => ({
        ...budgetStats,
        instanceId,
        held,
        granted: held
      })
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      yield* registry
        .registerBudget({ name: "upstream", instanceId: "a", stats: Effect.succeed(stats("a", 1)) })
        .pipe(Scope.extend(first))
      yield* registry
        .registerBudget({ name: "upstream", instanceId: "b", stats: Effect.succeed(stats("b", 2)) })
        .pipe(Scope.extend(second))
      const listed = yield* registry.budgets
      assert.deepStrictEqual(
        listed.map((b) => [b.name, b.instanceId]),
        [
          ["upstream", "a"],
          ["upstream", "b"]
        ],
        "one name, two instances: both listed, in registration order"
      )
      assert.deepStrictEqual(yield* Effect.forEach(listed, (b) => Effect.map(b.stats, (s) => s.held)), [1, 2])
      assert.deepStrictEqual(yield* registry.list, [], "budgets are not pools")
      yield* Scope.close(first, Exit.void)
      assert.deepStrictEqual(
        (yield* registry.budgets).map((b) => b.instanceId),
        ["b"]
      )
      yield* Scope.close(second, Exit.void)
      assert.deepStrictEqual(yield* registry.budgets, [])
    }).pipe(Effect.provide(PoolRegistry.layer))
  )

  it("BudgetStats is plain JSON: it survives encoding, a JSON round trip and decoding", () => {
    const json = JSON.stringify(Schema.encodeSync(PoolRegistry.BudgetStats)(budgetStats))
    assert.deepStrictEqual(Schema.decodeUnknownSync(PoolRegistry.BudgetStats)(JSON.parse(json)), budgetStats)
  })

  it("BudgetStats: mode, offline, instances, failOpen and reasserted are optional (a budget without them still decodes); a mode is one of three", () => {
    const { mode: _m, offline: _o, instances: _i, failOpen: _f, reasserted: _r, ...older } = budgetStats
    const decoded = Schema.decodeUnknownSync(PoolRegistry.BudgetStats)(JSON.parse(JSON.stringify(older)))
    assert.deepStrictEqual(decoded, older)
    assert.notProperty(decoded, "mode")
    assert.throws(() => Schema.decodeUnknownSync(PoolRegistry.BudgetStats)({ ...older, mode: "open" }))
  })
})
