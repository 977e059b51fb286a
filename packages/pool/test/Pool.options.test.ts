/**
 * A `Pool` takes every option of a keyed pool that does not concern keys:
 * each newly accepted one, exercised through `Pool`.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Exit, Fiber, Layer, Ref, Schedule, type Scope, TestClock } from "effect"
import { KeyedPool, Pool, PoolConfig } from "../src/index.js"
import { type Conn, failedWith, makeResources, settle } from "./utils/resource.js"

/** A connection error as Node reports it. */
const reset = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })

describe("Pool options", () => {
  it.scoped("validate (with validateAfter) destroys a stale item on borrow and hands out a fresh one", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const broken = new Set<number>()
      const pool = yield* Pool.make({
        acquire: resources.acquire("db"),
        validate: (c: Conn) => (broken.has(c.id) ? Effect.fail(reset()) : Effect.void),
        validateAfter: "1 second"
      })
      const first = yield* pool.use(Effect.succeed)
      broken.add(first.id)
      assert.strictEqual((yield* pool.use(Effect.succeed)).id, first.id, "idle less than validateAfter: not validated")
      yield* TestClock.adjust("1 second")
      const second = yield* pool.use(Effect.succeed)
      assert.notStrictEqual(second.id, first.id)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [first.id])
    })
  )

  it.scoped("healthCheck destroys a sick idle item on its schedule and refills to minIdle", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const sick = new Set<number>()
      const pool = yield* Pool.make({
        acquire: resources.acquire("db"),
        minIdle: 1,
        checkHistory: 5,
        healthCheckInterval: "30 seconds",
        healthCheck: {
          check: (c: Conn) => (sick.has(c.id) ? Effect.fail(reset()) : Effect.void)
        }
      })
      yield* settle
      const [item] = yield* pool.items
      assert.isDefined(item)
      sick.add(1)
      yield* TestClock.adjust("30 seconds")
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [1])
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.idle, stats.created], [1, 2])
      assert.strictEqual(stats.perKey[0].health.lastCheck?.kind, "check")
    })
  )

  it.scoped("heartbeat: a beat that outlives its timeout destroys the item", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const halfOpen = new Set<number>()
      const pool = yield* Pool.make({
        acquire: resources.acquire("db"),
        heartbeatInterval: "60 seconds",
        heartbeat: {
          beat: (c: Conn) => (halfOpen.has(c.id) ? Effect.never : Effect.void),
          timeout: "5 seconds"
        }
      })
      const conn = yield* pool.use(Effect.succeed)
      halfOpen.add(conn.id)
      yield* TestClock.adjust("60 seconds")
      yield* settle
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [conn.id])
      assert.strictEqual((yield* pool.stats).perKey[0].health.lastCheck?.kind, "heartbeat")
    })
  )

  it.scoped("breaker: failures open the circuit and callers fail fast with CircuitOpen", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      yield* Ref.set(resources.failing, new Set(["db"]))
      const pool = yield* Pool.make({
        acquire: resources.acquire("db"),
        createBackoff: false,
        breaker: { failures: 2, reset: "1 minute" }
      })
      assert.isTrue(failedWith(yield* Effect.exit(pool.use(Effect.succeed)), "ConnectError"))
      assert.isTrue(failedWith(yield* Effect.exit(pool.use(Effect.succeed)), "ConnectError"))
      assert.isTrue(failedWith(yield* Effect.exit(pool.use(Effect.succeed)), "CircuitOpen"))
      assert.strictEqual(yield* Ref.get(resources.created), 0)
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "open")
      yield* Ref.set(resources.failing, new Set())
      yield* TestClock.adjust("1 minute")
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(pool.use(Effect.succeed))), "a probe after reset closes it")
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "closed")
    })
  )

  it.scoped(
    "retry with isConnectionError: a connection failure is retried on a fresh item, a caller fault is not",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* Pool.make({
          acquire: resources.acquire("db"),
          retry: Schedule.recurs(2),
          isConnectionError: (e) => e === "gone"
        })
        const calls = yield* Ref.make(0)
        const out = yield* pool.use((c) =>
          Effect.flatMap(
            Ref.updateAndGet(calls, (n) => n + 1),
            (n) => (n === 1 ? Effect.fail("gone") : Effect.succeed(c.id))
          )
        )
        assert.strictEqual(out, 2, "the broken item was destroyed and a fresh one served the retry")
        assert.deepStrictEqual(yield* Ref.get(resources.closed), [1])
        const fault = yield* Effect.exit(pool.use(() => Effect.fail("bad request")))
        assert.isTrue(Exit.isFailure(fault))
        assert.deepStrictEqual(yield* Ref.get(resources.closed), [1], "a caller fault returns its item")
      })
  )

  it.scoped("createTimeout bounds a hanging creation with CreateTimeout", () =>
    Effect.gen(function* () {
      const pool = yield* Pool.make({
        acquire: Effect.never as Effect.Effect<Conn, never, Scope.Scope>,
        createTimeout: "2 seconds",
        acquireTimeout: "1 minute"
      })
      const caller = yield* Effect.fork(Effect.exit(pool.use(Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(failedWith(yield* Fiber.join(caller), "CreateTimeout"))
    })
  )

  it.effect("layerConfig reads max, minIdle and timings from Config and takes the other options in code", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      class Db extends Context.Tag("test/Db")<Db, Pool.Pool<Conn, unknown>>() {}
      const validated = yield* Ref.make(0)
      const live = Pool.layerConfig(Db, {
        acquire: resources.acquire("db"),
        validate: () => Ref.update(validated, (n) => n + 1),
        config: PoolConfig.settings({ maxPerKey: "DB_POOL_SIZE" })
      })
      const provider = ConfigProvider.fromMap(
        new Map([
          ["DB_POOL_SIZE", "2"],
          ["ACQUIRE_TIMEOUT", "3 seconds"]
        ])
      )
      const stats = yield* Effect.gen(function* () {
        const pool = yield* Db
        yield* pool.use(Effect.succeed)
        yield* pool.use(Effect.succeed)
        return yield* pool.stats
      }).pipe(Effect.provide(Layer.provide(live, Layer.setConfigProvider(provider))))
      assert.strictEqual(stats.config.maxPerKey, 2)
      assert.strictEqual(stats.config.acquireTimeoutMillis, 3000)
      assert.strictEqual(yield* Ref.get(validated), 1, "the second lease validated the idle item")
      const bad = ConfigProvider.fromMap(new Map([["DB_POOL_SIZE", "zero"]]))
      const exit = yield* Effect.exit(Effect.provide(Effect.void, Layer.provide(live, Layer.setConfigProvider(bad))))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), 'DB_POOL_SIZE="zero"')
    })
  )

  it.scoped("isPool and the dual combinators", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* Pool.make({ acquire: resources.acquire("db"), max: 2 })
      const keyed = yield* KeyedPool.make({ acquire: resources.acquire })
      assert.isTrue(Pool.isPool(pool))
      assert.isFalse(Pool.isPool(keyed))
      assert.isFalse(Pool.isPool({}))
      const a = yield* Pool.use(pool, (c) => Effect.succeed(c.id))
      const b = yield* pool.pipe(Pool.use((c: Conn) => Effect.succeed(c.id)))
      assert.deepStrictEqual([a, b], [1, 1])
      yield* pool.pipe(Pool.prewarm(2))
      assert.strictEqual((yield* pool.stats).idle, 2)
      const conn = yield* pool.use(Effect.succeed)
      yield* Pool.invalidate(pool, conn)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [conn.id])
    })
  )
})
