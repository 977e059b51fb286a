/**
 * Shared (multiplexed) leases: an item lent to up to `maxLeasesPerItem`
 * callers at once, as an HTTP/2 session or an MCP client is. Timing rules run
 * under `TestClock`.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  Cause,
  ConfigProvider,
  Context,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  MetricLabel,
  Ref,
  Scope,
  TestClock
} from "effect"
import { KeyedPool, Pool, PoolConfig, PoolMetrics } from "../src/index.js"
import { type Conn, makeResources, settle } from "./utils/resource.js"

/** A connection failure the default classifier recognises. */
const reset = () => Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })

/** Leases `key` in a scope of its own, to be closed by the test. */
const hold = <E>(pool: KeyedPool.KeyedPool<string, Conn, E>, key: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const conn = yield* pool.get(key).pipe(Scope.extend(scope))
    return { conn, scope }
  })

describe("shared leases", () => {
  it.scoped("up to maxLeasesPerItem callers share one item; the next item only when it is full", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 3, maxPerKey: 4 })
      const leases = []
      for (let i = 0; i < 3; i++) leases.push(yield* hold(pool, "a"))
      assert.deepStrictEqual(
        leases.map((l) => l.conn.id),
        [1, 1, 1]
      )
      assert.strictEqual(yield* Ref.get(r.created), 1)
      leases.push(yield* hold(pool, "a"))
      assert.strictEqual(leases[3].conn.id, 2, "a second item once the first is at its limit")
      const stats = yield* pool.stats
      assert.deepStrictEqual(
        [stats.size, stats.inUse, stats.leases, stats.perKey[0].leases, stats.perKey[0].maxLeases],
        [2, 2, 4, 4, 3]
      )
      assert.strictEqual(stats.config.maxLeasesPerItem, 3)
      assert.deepStrictEqual((yield* pool.items).map((i) => i.leases).sort(), [1, 3])
      for (const l of leases) yield* Scope.close(l.scope, Exit.void)
      const after = yield* pool.stats
      assert.deepStrictEqual([after.idle, after.inUse, after.leases, after.perKey[0].maxLeases], [2, 0, 0, 0])
    })
  )

  it.scoped("a new lease goes to the item with the fewest leases", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 2, maxPerKey: 3 })
      const first = [yield* hold(pool, "a"), yield* hold(pool, "a"), yield* hold(pool, "a")]
      assert.deepStrictEqual(
        first.map((l) => l.conn.id),
        [1, 1, 2]
      )
      // Item 1 has 2 leases, item 2 has 1: freeing item 2's lease makes it idle, with the fewest (none).
      yield* Scope.close(first[2].scope, Exit.void)
      const next = yield* hold(pool, "a")
      assert.strictEqual(next.conn.id, 2, "the idle item has the fewest leases")
      // Item 1 has 2 leases (full), item 2 has 1; free one of item 1's: both have 1, then 1 and 2.
      yield* Scope.close(first[0].scope, Exit.void)
      const again = yield* hold(pool, "a")
      const last = yield* hold(pool, "a")
      assert.deepStrictEqual([again.conn.id, last.conn.id].sort(), [1, 2], "one each: the fewest first")
      for (const l of [first[1], next, again, last]) yield* Scope.close(l.scope, Exit.void)
      assert.strictEqual(yield* Ref.get(r.created), 2)
    })
  )

  it.scoped("waiters are served, first come first served, as soon as an item has room", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 2, maxPerKey: 1, drainTimeout: 0 })
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      const served: Array<string> = []
      const waiters = yield* Effect.forEach(["w1", "w2", "w3"], (name) =>
        Effect.fork(
          Effect.scoped(
            Effect.zipRight(
              pool.get("a"),
              Effect.zipRight(
                Effect.sync(() => served.push(name)),
                Effect.never
              )
            )
          )
        )
      )
      yield* settle
      assert.deepStrictEqual(served, [])
      assert.strictEqual((yield* pool.stats).waiting, 3)
      yield* Scope.close(a.scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(served, ["w1"])
      yield* Scope.close(b.scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(served, ["w1", "w2"])
      assert.strictEqual((yield* pool.stats).waiting, 1)
      yield* Effect.forEach(waiters, Fiber.interrupt)
      assert.strictEqual(yield* Ref.get(r.created), 1, "never above maxPerKey items")
    })
  )

  it.scoped("one creation serves up to maxLeasesPerItem waiters: no creation per caller", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const gate = yield* Deferred.make<void>()
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.zipRight(Deferred.await(gate), r.acquire(key)),
        maxLeasesPerItem: 10,
        maxPerKey: 5
      })
      const done = yield* Ref.make(0)
      const callers = yield* Effect.forEach(Array.from({ length: 25 }), () =>
        Effect.fork(pool.use("a", () => Ref.update(done, (n) => n + 1)))
      )
      yield* settle
      assert.strictEqual((yield* pool.stats).creating, 3, "25 callers need 3 items of 10")
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(callers, Fiber.join)
      assert.strictEqual(yield* Ref.get(done), 25)
      assert.strictEqual(yield* Ref.get(r.created), 3)
    })
  )

  it.scoped("maxLeasesPerItem: Infinity lets one item serve everyone", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: Number.POSITIVE_INFINITY })
      const gate = yield* Deferred.make<void>()
      const callers = yield* Effect.forEach(Array.from({ length: 50 }), () =>
        Effect.fork(pool.use("a", () => Deferred.await(gate)))
      )
      yield* settle
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.size, stats.leases, stats.config.maxLeasesPerItem], [1, 50, null])
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(callers, Fiber.join)
      assert.strictEqual(yield* Ref.get(r.created), 1)
    })
  )

  it.scoped("limits count items, not leases", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: r.acquire,
        maxLeasesPerItem: 2,
        maxPerKey: 2,
        maxTotal: 3,
        acquireTimeout: "1 second",
        drainTimeout: 0
      })
      const held = []
      for (let i = 0; i < 4; i++) held.push(yield* hold(pool, "a"))
      for (let i = 0; i < 2; i++) held.push(yield* hold(pool, "b"))
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.size, stats.leases], [3, 6])
      const late = yield* Effect.fork(Effect.scoped(pool.get("a")))
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(late)
      assert.isTrue(Exit.isFailure(exit), "the key is at maxPerKey with every item full")
    })
  )

  it.scoped("an item is idle only with no lease: idle expiry counts from its last lease's end", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: r.acquire,
        maxLeasesPerItem: 4,
        idleTimeout: "1 minute",
        cleanupInterval: "10 seconds"
      })
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual(yield* Ref.get(r.alive), 1, "a leased item never expires")
      yield* Scope.close(a.scope, Exit.void)
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual(yield* Ref.get(r.alive), 1, "still one lease: not idle")
      assert.strictEqual((yield* pool.stats).idle, 0)
      yield* Scope.close(b.scope, Exit.void)
      assert.strictEqual((yield* pool.stats).idle, 1)
      yield* TestClock.adjust("50 seconds")
      assert.strictEqual(yield* Ref.get(r.alive), 1)
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual(yield* Ref.get(r.alive), 0, "idle a minute after its last lease ended")
    })
  )

  it.scoped("maxLifetime retires a shared item once its last lease ends, and it takes no new lease", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 4, maxLifetime: "1 minute" })
      const a = yield* hold(pool, "a")
      yield* TestClock.adjust("2 minutes")
      const b = yield* hold(pool, "a")
      assert.strictEqual(b.conn.id, 2, "too old for a new lease")
      yield* Scope.close(a.scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(r.closed), [1])
      yield* Scope.close(b.scope, Exit.void)
    })
  )

  it.scoped("health checks and heartbeats run only on items with no lease", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const checked: Array<number> = []
      const pool = yield* KeyedPool.make({
        acquire: r.acquire,
        maxLeasesPerItem: 4,
        maxPerKey: 2,
        healthCheck: { check: (conn) => Effect.sync(() => checked.push(conn.id)) },
        healthCheckInterval: "10 seconds",
        drainTimeout: 0
      })
      const held = []
      for (let i = 0; i < 5; i++) held.push(yield* hold(pool, "a"))
      // Item 1 has 4 leases, item 2 one: free item 2.
      yield* Scope.close(held[4].scope, Exit.void)
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(checked, [2])
      yield* Scope.close(held[0].scope, Exit.void)
      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(checked, [2, 2], "item 1 still has 3 leases")
    })
  )

  it.scoped("invalidate stops new leases at once; the item is destroyed when its last lease ends", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 4 })
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      yield* pool.invalidate(a.conn)
      const c = yield* hold(pool, "a")
      assert.strictEqual(c.conn.id, 2, "an invalidated item takes no new lease")
      yield* Scope.close(a.scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(r.closed), [], "b still holds it")
      yield* Scope.close(b.scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(r.closed), [1])
      yield* Scope.close(c.scope, Exit.void)
      assert.deepStrictEqual([(yield* pool.stats).idle, yield* Ref.get(r.alive)], [1, 1])
    })
  )

  it.scoped("a connection failure in one lease breaks the item for everyone; holders finish on their own", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 4 })
      const other = yield* hold(pool, "a")
      const failed = yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
      assert.isTrue(Exit.isFailure(failed))
      const next = yield* hold(pool, "a")
      assert.strictEqual(next.conn.id, 2, "new leases go to another item")
      assert.deepStrictEqual(yield* Ref.get(r.closed), [], "the other holder still has item 1")
      const stillThere = yield* pool.stats
      assert.deepStrictEqual([stillThere.size, stillThere.leases], [2, 2])
      yield* Scope.close(other.scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(r.closed), [1], "destroyed after its last lease")
      yield* Scope.close(next.scope, Exit.void)
    })
  )

  it.scoped("a broken item makes room for a replacement at once when the limits allow", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 2, maxPerKey: 2 })
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      const c = yield* hold(pool, "a")
      const d = yield* hold(pool, "a")
      const waiting = yield* Effect.fork(hold(pool, "a"))
      yield* settle
      assert.strictEqual((yield* pool.stats).waiting, 1)
      // Both items are full and at maxPerKey; invalidating one does not free a slot until its leases end.
      yield* pool.invalidate(a.conn)
      yield* settle
      assert.isNull(waiting.unsafePoll())
      yield* Scope.close(a.scope, Exit.void)
      yield* Scope.close(b.scope, Exit.void)
      const served = yield* Fiber.join(waiting)
      assert.strictEqual(served.conn.id, 3, "a fresh item once the broken one is gone")
      for (const l of [c, d, served]) yield* Scope.close(l.scope, Exit.void)
    })
  )

  it.scoped("shutdown waits for every shared lease", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const poolScope = yield* Scope.make()
      const pool = yield* KeyedPool.make({ acquire: r.acquire, maxLeasesPerItem: 3, drainTimeout: "1 minute" }).pipe(
        Scope.extend(poolScope)
      )
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      const closing = yield* Effect.fork(Scope.close(poolScope, Exit.void))
      yield* settle
      yield* Scope.close(a.scope, Exit.void)
      yield* settle
      assert.isNull(closing.unsafePoll())
      assert.strictEqual(yield* Ref.get(r.alive), 1)
      yield* Scope.close(b.scope, Exit.void)
      yield* Fiber.join(closing)
      assert.strictEqual(yield* Ref.get(r.alive), 0)
    })
  )

  it.scoped("validation runs on an item taken from idle, before anyone else shares it", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const validated: Array<number> = []
      const pool = yield* KeyedPool.make({
        acquire: r.acquire,
        maxLeasesPerItem: 3,
        validate: (conn) => Effect.sync(() => validated.push(conn.id))
      })
      yield* Effect.scoped(pool.get("a"))
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      assert.deepStrictEqual(validated, [1], "once, when it left idle")
      assert.strictEqual(b.conn.id, 1)
      yield* Scope.close(a.scope, Exit.void)
      yield* Scope.close(b.scope, Exit.void)
    })
  )

  it.scoped("Pool takes maxLeasesPerItem too", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* Pool.make({ acquire: r.acquire("db"), maxLeasesPerItem: 5, max: 2 })
      const ids = yield* Effect.all(
        Array.from({ length: 7 }, () => pool.get),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(ids.map((c) => c.id).sort(), [1, 1, 1, 1, 1, 2, 2])
    })
  )

  it.effect("maxLeasesPerItem is validated, in options and in configuration", () =>
    Effect.gen(function* () {
      for (const bad of [0, 1.5, -1, "10"]) {
        const exit = yield* Effect.exit(
          Effect.scoped(KeyedPool.make({ acquire: (_: string) => Effect.succeed(1), maxLeasesPerItem: bad as number }))
        )
        assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
        assert.include(Cause.pretty((exit as Exit.Failure<never, never>).cause), "maxLeasesPerItem")
      }
      const read = (value: string) =>
        Effect.exit(
          PoolConfig.settings().pipe(
            Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["MAX_LEASES_PER_ITEM", value]])))
          )
        )
      const ok = yield* read("50")
      assert.isTrue(Exit.isSuccess(ok) && ok.value.maxLeasesPerItem === 50)
      const wrong = yield* read("0")
      assert.isTrue(Exit.isFailure(wrong))
      assert.include(String(Exit.isFailure(wrong) ? wrong.cause : ""), "MAX_LEASES_PER_ITEM")
    })
  )

  it.scoped("layerConfig reads MAX_LEASES_PER_ITEM", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      class Upstreams extends Context.Tag("test/Upstreams")<Upstreams, KeyedPool.KeyedPool<string, Conn>>() {}
      const layer = KeyedPool.layerConfig(Upstreams, {
        acquire: (key: string) => Effect.orDie(r.acquire(key)),
        config: PoolConfig.settings()
      }).pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["MAX_LEASES_PER_ITEM", "8"]])))))
      const stats = yield* Effect.provide(
        Effect.flatMap(Upstreams, (pool) => pool.stats),
        layer
      )
      assert.strictEqual(stats.config.maxLeasesPerItem, 8)
    })
  )

  it.scoped("the leases gauge counts callers, per pool and per labelled key", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({
        name: "shared-gauge",
        acquire: r.acquire,
        maxLeasesPerItem: 5,
        metricsPerKey: 1,
        describeKey: (k) => k
      })
      const held = [yield* hold(pool, "a"), yield* hold(pool, "a"), yield* hold(pool, "a")]
      yield* pool.stats
      const gauge = (labels: ReadonlyArray<MetricLabel.MetricLabel>) =>
        Effect.map(Metric.value(Metric.taggedWithLabels(PoolMetrics.leases, labels)), (s) => s.value)
      const poolLabel = MetricLabel.make("pool", "shared-gauge")
      assert.strictEqual(yield* gauge([poolLabel]), 3)
      assert.strictEqual(yield* gauge([poolLabel, MetricLabel.make("key", "a")]), 3)
      assert.strictEqual(
        yield* Effect.map(Metric.value(Metric.taggedWithLabels(PoolMetrics.inUse, [poolLabel])), (s) => s.value),
        1,
        "in use counts items"
      )
      for (const l of held) yield* Scope.close(l.scope, Exit.void)
      yield* pool.stats
      assert.strictEqual(yield* gauge([poolLabel]), 0)
    })
  )

  it.scoped("with the default of 1, leases stay exclusive and stats unchanged", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: r.acquire, drainTimeout: 0 })
      const a = yield* hold(pool, "a")
      const b = yield* hold(pool, "a")
      assert.notStrictEqual(a.conn.id, b.conn.id)
      const stats = yield* pool.stats
      assert.isUndefined(stats.leases)
      assert.isUndefined(stats.perKey[0].leases)
      assert.isUndefined(stats.config.maxLeasesPerItem)
      assert.deepStrictEqual(
        (yield* pool.items).map((i) => i.leases),
        [1, 1]
      )
    })
  )
})
