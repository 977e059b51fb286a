import { assert, describe, it } from "@effect/vitest"
import { Cause, Chunk, Deferred, Effect, Exit, Fiber, Ref, Scope, Stream, TestClock } from "effect"
import { KeyedPool, type PoolError } from "../src/index.js"
import { type Conn, ConnectError, failedWith, makeResources, settle } from "./utils/resource.js"

const poolIn = (scope: Scope.Scope, options: Omit<KeyedPool.Options<string, Conn, ConnectError, never>, "acquire">) =>
  Effect.gen(function* () {
    const resources = yield* makeResources
    const pool = yield* KeyedPool.make({ acquire: resources.acquire, ...options }).pipe(Scope.extend(scope))
    return { pool, resources }
  })

describe("KeyedPool", () => {
  it.scoped("reuses the most recently returned item of a key", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, { maxPerKey: 3 })
      const first = yield* pool.use("a", Effect.succeed)
      const second = yield* pool.use("a", Effect.succeed)
      assert.strictEqual(first, second)
      assert.strictEqual(yield* Ref.get(resources.created), 1)
      const other = yield* pool.use("b", Effect.succeed)
      assert.notStrictEqual(other.id, first.id)
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.keys, stats.size, stats.idle, stats.inUse], [2, 2, 2, 0])
    })
  )

  it.scoped("ends a lease on success, failure and interruption alike", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool } = yield* poolIn(scope, { maxPerKey: 1 })
      yield* Effect.scoped(pool.get("a"))
      const failed = yield* Effect.exit(pool.use("a", () => Effect.fail("boom")))
      assert.isTrue(Exit.isFailure(failed))
      const latch = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        pool.use("a", () => Effect.zipRight(Deferred.succeed(latch, undefined), Effect.never))
      )
      yield* Deferred.await(latch)
      assert.strictEqual((yield* pool.stats).inUse, 1)
      yield* Fiber.interrupt(fiber)
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.inUse, stats.idle, stats.created], [0, 1, 1])
    })
  )

  it.scoped("serves waiters of a key first come, first served", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool } = yield* poolIn(scope, { maxPerKey: 1 })
      const order = yield* Ref.make<ReadonlyArray<number>>([])
      const release = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(pool.use("a", () => Deferred.await(release)))
      yield* settle
      const waiters = yield* Effect.forEach([1, 2, 3], (n) =>
        Effect.fork(pool.use("a", () => Ref.update(order, (o) => [...o, n]))).pipe(Effect.zipLeft(settle))
      )
      assert.strictEqual((yield* pool.stats).waiting, 3)
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      yield* Effect.forEach(waiters, Fiber.join)
      assert.deepStrictEqual(yield* Ref.get(order), [1, 2, 3])
      assert.strictEqual((yield* pool.stats).created, 1)
    })
  )

  it.scoped("holds maxPerKey and maxTotal, counting items being created", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const gate = yield* Deferred.make<void>()
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.zipRight(Deferred.await(gate), resources.acquire(key)),
        maxPerKey: 2,
        maxTotal: 3
      }).pipe(Scope.extend(scope))
      const fibers = yield* Effect.forEach(["a", "a", "a", "b", "b"], (k) =>
        Effect.fork(pool.use(k, () => Effect.void))
      )
      yield* settle
      const during = yield* pool.stats
      assert.deepStrictEqual([during.creating, during.size, during.waiting], [3, 3, 2])
      for (const k of during.perKey) assert.isAtMost(k.size, 2)
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(fibers, Fiber.join)
      const after = yield* pool.stats
      assert.isAtMost(after.size, 3)
      assert.strictEqual(after.inUse, 0)
    })
  )

  it.scoped("destroys the least recently used idle item of another key when the total is full", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, { maxPerKey: 2, maxTotal: 2 })
      const a = yield* pool.use("a", Effect.succeed)
      yield* TestClock.adjust("1 second")
      const b = yield* pool.use("b", Effect.succeed)
      yield* pool.use("c", Effect.succeed)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [a.id])
      const stats = yield* pool.stats
      assert.deepStrictEqual(stats.perKey.map((k) => k.key).length, 2)
      assert.strictEqual(yield* Ref.get(resources.alive), 2)
      assert.notInclude(yield* Ref.get(resources.closed), b.id)
    })
  )

  it.scoped("is fair across keys when the total is the bottleneck", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool } = yield* poolIn(scope, { maxPerKey: 2, maxTotal: 2 })
      const served = yield* Ref.make<ReadonlyArray<string>>([])
      // Key "a" holds the whole total and keeps cycling; "b" arrives later.
      const worker = (key: string, n: number) =>
        Effect.forEach(
          Array.from({ length: n }, (_, i) => i),
          () =>
            pool.use(key, () =>
              Effect.zipRight(
                Ref.update(served, (s) => [...s, key]),
                Effect.yieldNow()
              )
            ),
          { discard: true }
        )
      const as = yield* Effect.fork(
        Effect.all([worker("a", 20), worker("a", 20), worker("a", 20)], { concurrency: "unbounded" })
      )
      yield* Effect.yieldNow()
      const b = yield* Effect.fork(worker("b", 1))
      yield* Fiber.join(b)
      const beforeB = (yield* Ref.get(served)).indexOf("b")
      yield* Fiber.join(as)
      assert.isAtLeast(beforeB, 0)
      assert.isBelow(beforeB, 10, "b was served while a's items cycled")
    })
  )

  it.scoped("fails a caller with PoolTimeout after acquireTimeout and gives its place to the next", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool } = yield* poolIn(scope, { maxPerKey: 1, acquireTimeout: "5 seconds", describeKey: (k) => k })
      const release = yield* Deferred.make<void>()
      yield* Effect.fork(pool.use("a", () => Deferred.await(release)))
      yield* settle
      const late = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* TestClock.adjust("3 seconds")
      const next = yield* Effect.fork(pool.use("a", Effect.succeed))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      const exit = yield* Fiber.join(late)
      assert.isTrue(failedWith(exit, "PoolTimeout"))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        const error = exit.cause.error as PoolError.PoolTimeout
        assert.strictEqual(error.key, "a")
        assert.strictEqual(error.waitedMillis, 5000)
        assert.strictEqual(error.limits.maxPerKey, 1)
        assert.strictEqual(error.keySnapshot.inUse, 1)
        assert.strictEqual(error.keySnapshot.waiting, 2, "the snapshot counts the caller that timed out")
        assert.include(error.message, "5000 ms")
      }
      yield* Deferred.succeed(release, undefined)
      const conn = yield* Fiber.join(next)
      assert.strictEqual(conn.key, "a")
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.timeouts, stats.waiting, stats.inUse], [1, 0, 0])
    })
  )

  it.scoped("fails exactly the caller whose acquire failed and frees its slot", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, { maxPerKey: 1 })
      yield* Ref.set(resources.failing, new Set(["a"]))
      const exit = yield* Effect.exit(pool.use("a", Effect.succeed))
      assert.deepStrictEqual(exit, Exit.fail(new ConnectError("a")))
      yield* Ref.set(resources.failing, new Set())
      // The key's next creation backs off (100 ms at most after one failure).
      const next = yield* Effect.fork(pool.use("a", Effect.succeed))
      yield* settle
      assert.strictEqual(yield* Ref.get(resources.created), 0, "not during the backoff")
      yield* TestClock.adjust("100 millis")
      const conn = yield* Fiber.join(next)
      assert.strictEqual(conn.key, "a")
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.failures, stats.creating, stats.size], [1, 0, 1])
    })
  )

  it.scoped("a failed creation passes the slot to the next waiter, who tries on its own", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const gate = yield* Deferred.make<void>()
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.zipRight(Deferred.await(gate), resources.acquire(key)),
        maxPerKey: 1,
        createBackoff: false
      }).pipe(Scope.extend(scope))
      yield* Ref.set(resources.failing, new Set(["a"]))
      const first = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      const second = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      assert.isTrue(failedWith(yield* Fiber.join(first), "ConnectError"))
      assert.isTrue(failedWith(yield* Fiber.join(second), "ConnectError"))
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.failures, stats.size, stats.keys], [2, 0, 0])
    })
  )

  it.scoped("expires idle items within one cleanupInterval, keeping minIdlePerKey, and drops empty keys", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, {
        maxPerKey: 3,
        minIdlePerKey: 1,
        idleTimeout: "10 minutes",
        cleanupInterval: "1 minute"
      })
      yield* Effect.all([pool.use("a", () => Effect.yieldNow()), pool.use("a", () => Effect.yieldNow())], {
        concurrency: "unbounded"
      })
      yield* Effect.scoped(Effect.all([pool.get("b"), pool.get("b")]))
      assert.strictEqual(yield* Ref.get(resources.alive), 4)
      yield* TestClock.adjust("599 seconds")
      assert.strictEqual(yield* Ref.get(resources.alive), 4, "not before idleTimeout")
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(resources.alive), 2)
      const stats = yield* pool.stats
      assert.deepStrictEqual(
        stats.perKey.map((k) => k.idle),
        [1, 1]
      )
    })
  )

  it.scoped("drops a key once its last item expires", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, { idleTimeout: "1 minute", cleanupInterval: "30 seconds" })
      yield* pool.use("a", Effect.succeed)
      yield* TestClock.adjust("90 seconds")
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
      assert.strictEqual((yield* pool.stats).keys, 0)
    })
  )

  it.scoped("retires an item older than maxLifetime when its lease ends", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, { maxLifetime: "30 minutes" })
      const conn = yield* pool.use("a", (c) => Effect.as(TestClock.adjust("31 minutes"), c))
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [conn.id])
      const next = yield* pool.use("a", Effect.succeed)
      assert.notStrictEqual(next.id, conn.id)
    })
  )

  it.scoped("reports what cleanup did", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool } = yield* poolIn(scope, { idleTimeout: "1 minute", cleanupInterval: "1 hour" })
      yield* Effect.scoped(Effect.all([pool.get("a"), pool.get("b"), pool.get("b")]))
      yield* TestClock.adjust("2 minutes")
      const report = yield* pool.cleanup
      assert.deepStrictEqual(report, { before: 3, after: 0, cleaned: 3, keysDropped: 2 })
    })
  )

  it.scoped("never hands out items of an old fingerprint again and destroys them once returned", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const resources = yield* makeResources
      interface UserKey {
        readonly user: string
        readonly token: string
      }
      const pool = yield* KeyedPool.make({
        acquire: (key: UserKey) => resources.acquire(`${key.user}:${key.token}`),
        keyId: (key) => key.user,
        fingerprint: (key) => key.token,
        maxPerKey: 2
      }).pipe(Scope.extend(scope))
      const leaseScope = yield* Scope.make()
      const leasedOld = yield* pool.get({ user: "u", token: "t1" }).pipe(Scope.extend(leaseScope))
      const idleOld = yield* pool.use({ user: "u", token: "t1" }, Effect.succeed)
      assert.notStrictEqual(leasedOld.id, idleOld.id)
      const fresh = yield* pool.use({ user: "u", token: "t2" }, Effect.succeed)
      assert.strictEqual(fresh.key, "u:t2")
      assert.include(yield* Ref.get(resources.closed), idleOld.id)
      yield* Scope.close(leaseScope, Exit.void)
      assert.include(yield* Ref.get(resources.closed), leasedOld.id)
      const again = yield* pool.use({ user: "u", token: "t2" }, Effect.succeed)
      assert.strictEqual(again.id, fresh.id)
      // A late caller with the retired token does not move the key back.
      const late = yield* pool.use({ user: "u", token: "t1" }, Effect.succeed)
      assert.strictEqual(late.id, fresh.id)
      assert.notInclude(yield* Ref.get(resources.closed), fresh.id)
    })
  )

  it.scoped("invalidate destroys a leased item when it comes back and an idle one at once", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, {})
      const leased = yield* pool.use("a", (c) => Effect.as(pool.invalidate(c), c))
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [leased.id])
      const idle = yield* pool.use("a", Effect.succeed)
      yield* pool.invalidate(idle)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [leased.id, idle.id])
      yield* pool.invalidate({ key: "a", id: 999 })
      assert.strictEqual((yield* pool.stats).size, 0)
    })
  )

  it.scoped("evicts an entirely idle key beyond maxKeys, and fails fast when none is idle", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool, resources } = yield* poolIn(scope, { maxKeys: 2, describeKey: (k) => k })
      yield* pool.use("a", Effect.succeed)
      yield* pool.use("b", Effect.succeed)
      yield* pool.use("c", Effect.succeed)
      assert.strictEqual(yield* Ref.get(resources.alive), 2)
      const held = yield* Scope.make()
      yield* Effect.all([pool.get("b"), pool.get("c")]).pipe(Scope.extend(held))
      const exit = yield* Effect.exit(pool.use("d", Effect.succeed))
      assert.isTrue(failedWith(exit, "KeyLimitExceeded"))
      yield* Scope.close(held, Exit.void)
    })
  )

  it.scoped("stats show per-key counts and the config in force", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const { pool } = yield* poolIn(scope, {
        name: "upstreams",
        maxPerKey: 4,
        maxTotal: 8,
        describeKey: (k) => `user:${k}`
      })
      yield* TestClock.adjust("1 second")
      const lease = yield* Scope.make()
      yield* pool.get("a").pipe(Scope.extend(lease))
      const stats = yield* pool.stats
      assert.strictEqual(stats.name, "upstreams")
      assert.deepStrictEqual(stats.perKey, [
        {
          key: "user:a",
          max: 4,
          size: 1,
          idle: 0,
          inUse: 1,
          creating: 0,
          waiting: 0,
          created: 1,
          destroyed: 0,
          timeouts: 0,
          failures: 0,
          createdAt: 1000,
          lastUsed: 1000,
          checking: 0,
          health: {
            state: "healthy",
            breaker: "closed",
            consecutiveFailures: 0,
            retryAt: null,
            lastCheck: null,
            history: [],
            transitions: []
          }
        }
      ])
      assert.deepStrictEqual(stats.config, {
        maxPerKey: 4,
        maxTotal: 8,
        maxKeys: 10_000,
        minIdlePerKey: 0,
        idleTimeoutMillis: 600_000,
        maxLifetimeMillis: null,
        acquireTimeoutMillis: 30_000,
        cleanupIntervalMillis: 60_000,
        drainTimeoutMillis: 10_000,
        createTimeoutMillis: null,
        createConcurrency: 4
      })
      yield* Scope.close(lease, Exit.void)
    })
  )

  it.effect("rejects invalid options with a defect naming the option", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Effect.scoped(KeyedPool.make({ acquire: (_: string) => Effect.succeed(1), maxPerKey: 0 }))
      )
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
      assert.include(Cause.pretty((exit as Exit.Failure<never, never>).cause), "maxPerKey = 0")
    })
  )
})

describe("KeyedPool streams", () => {
  const streamPool = Effect.gen(function* () {
    const scope = yield* Effect.scope
    return yield* poolIn(scope, { maxPerKey: 1 })
  })

  it.scoped("returns the lease when the stream is cut short with Stream.take", () =>
    Effect.gen(function* () {
      const { pool } = yield* streamPool
      const out = yield* Stream.runCollect(pool.stream("a", (c) => Stream.take(Stream.repeatValue(c.id), 3)))
      assert.strictEqual(Chunk.size(out), 3)
      const infinite = yield* Stream.runCollect(
        Stream.take(
          pool.stream("a", () => Stream.repeatValue(1)),
          2
        )
      )
      assert.strictEqual(Chunk.size(infinite), 2)
      assert.strictEqual((yield* pool.stats).inUse, 0)
    })
  )

  it.scoped("returns the lease when the stream fails", () =>
    Effect.gen(function* () {
      const { pool } = yield* streamPool
      const exit = yield* Effect.exit(
        Stream.runDrain(pool.stream("a", () => Stream.concat(Stream.make(1, 2), Stream.fail("upstream broke"))))
      )
      assert.deepStrictEqual(exit, Exit.fail("upstream broke"))
      assert.strictEqual((yield* pool.stats).inUse, 0)
    })
  )

  it.scoped("returns the lease when the consumer is interrupted", () =>
    Effect.gen(function* () {
      const { pool } = yield* streamPool
      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        Stream.runDrain(
          pool.stream("a", () => Stream.concat(Stream.fromEffect(Deferred.succeed(started, undefined)), Stream.never))
        )
      )
      yield* Deferred.await(started)
      assert.strictEqual((yield* pool.stats).inUse, 1)
      yield* Fiber.interrupt(fiber)
      assert.strictEqual((yield* pool.stats).inUse, 0)
    })
  )
})
