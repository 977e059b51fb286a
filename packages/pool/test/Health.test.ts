import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Ref, Schedule, type Scope, TestClock } from "effect"
import { HealthCheck, KeyedPool } from "../src/index.js"
import { type Conn, failedWith, makeResources, settle } from "./utils/resource.js"

/** A connection error as Node reports it. */
const reset = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })

describe("validate on borrow", () => {
  it.scoped("destroys an idle item that fails validation and hands out a fresh one", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const broken = new Set<number>()
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        validate: (c: Conn) => (broken.has(c.id) ? Effect.fail(reset()) : Effect.void)
      })
      const first = yield* pool.use("a", Effect.succeed)
      broken.add(first.id)
      const second = yield* pool.use("a", Effect.succeed)
      assert.notStrictEqual(second.id, first.id)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [first.id])
      const history = (yield* pool.stats).perKey[0].health.history // failures only
      assert.deepStrictEqual(
        history.map((r) => [r.kind, r.ok]),
        [["validate", false]]
      )
    })
  )

  it.scoped("skips validation of an item idle less than validateAfter", () =>
    Effect.gen(function* () {
      const validations = yield* Ref.make(0)
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        validate: () => Ref.update(validations, (n) => n + 1),
        validateAfter: "1 second"
      })
      yield* pool.use("a", Effect.succeed)
      yield* pool.use("a", Effect.succeed)
      assert.strictEqual(yield* Ref.get(validations), 0)
      yield* TestClock.adjust("1 second")
      yield* pool.use("a", Effect.succeed)
      assert.strictEqual(yield* Ref.get(validations), 1)
    })
  )
})

describe("health checks and heartbeats", () => {
  it.scoped("check idle items on their schedule, keep a bounded history, and refill to minIdlePerKey", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const sick = new Set<number>()
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        minIdlePerKey: 2,
        checkHistory: 3,
        healthCheckInterval: "30 seconds",
        healthCheck: {
          check: (c: Conn) => (sick.has(c.id) ? Effect.fail(reset()) : Effect.void)
        }
      })
      yield* Effect.scoped(Effect.all([pool.get("a"), pool.get("a")]))
      const [one] = (yield* pool.items).map((_, i) => i + 1)
      sick.add(one)
      yield* TestClock.adjust("30 seconds")
      yield* settle
      const closed = yield* Ref.get(resources.closed)
      assert.deepStrictEqual(closed, [one], "the sick item is destroyed")
      const stats = yield* pool.stats
      assert.strictEqual(stats.idle, 2, "and replaced up to minIdlePerKey")
      assert.strictEqual(stats.created, 3)
      const health = stats.perKey[0].health
      assert.strictEqual(health.state, "degraded")
      assert.isFalse(health.lastCheck?.ok)
      yield* TestClock.adjust("60 seconds")
      yield* settle
      const later = (yield* pool.stats).perKey[0].health
      assert.strictEqual(later.history.length, 3, "history is bounded")
      assert.strictEqual(later.state, "healthy")
      assert.strictEqual(later.lastCheck?.at, 90_000)
    })
  )

  it.scoped("a heartbeat that outlives its timeout finds a half-open connection", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const halfOpen = new Set<number>()
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        heartbeatInterval: "60 seconds",
        heartbeat: {
          beat: (c: Conn) => (halfOpen.has(c.id) ? Effect.never : Effect.void),
          timeout: "5 seconds"
        }
      })
      const conn = yield* pool.use("a", Effect.succeed)
      yield* TestClock.adjust("60 seconds")
      yield* settle
      assert.strictEqual((yield* pool.stats).perKey[0].health.lastCheck?.kind, "heartbeat")
      halfOpen.add(conn.id)
      yield* TestClock.adjust("60 seconds")
      yield* settle
      const during = yield* pool.stats
      assert.deepStrictEqual([during.perKey[0].checking, during.inUse, during.idle], [1, 1, 0])
      yield* TestClock.adjust("5 seconds")
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [conn.id])
      const after = (yield* pool.stats).perKey[0]
      assert.strictEqual(after.size, 0)
      assert.strictEqual(after.health.state, "degraded", "the key keeps its history while empty")
      assert.include(after.health.lastCheck?.error, "timed out")
    })
  )

  it.scoped("a check never keeps a caller waiting: a waiter gets the item as soon as its check ends", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const checking = yield* Deferred.make<void>()
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        maxPerKey: 1,
        healthCheckInterval: "30 seconds",
        healthCheck: {
          check: () => Effect.zipRight(Deferred.succeed(checking, undefined), Effect.sleep("1 second"))
        }
      })
      yield* pool.use("a", Effect.succeed)
      yield* TestClock.adjust("30 seconds")
      yield* Deferred.await(checking)
      const caller = yield* Effect.fork(pool.use("a", Effect.succeed))
      yield* settle
      yield* TestClock.adjust("1 second")
      const conn = yield* Fiber.join(caller)
      assert.strictEqual(conn.id, 1)
      assert.strictEqual(yield* Ref.get(resources.created), 1)
    })
  )

  it.scoped("idle expiry still applies to items that are checked", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        idleTimeout: "2 minutes",
        cleanupInterval: "1 minute",
        healthCheckInterval: "10 seconds",
        healthCheck: { check: () => Effect.void }
      })
      yield* pool.use("a", Effect.succeed)
      yield* TestClock.adjust("3 minutes")
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
    })
  )
})

describe("retries and rebuilds", () => {
  it.scoped("use destroys an item that failed with a connection error, even without retries", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire })
      const exit = yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [1])
      yield* Effect.exit(pool.use("a", () => Effect.fail("caller fault")))
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [1], "a caller fault returns the item")
    })
  )

  it.scoped("retries a connection failure on a fresh item per the schedule", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, retry: true })
      const attempts = yield* Ref.make<ReadonlyArray<number>>([])
      const fiber = yield* Effect.fork(
        pool.use("a", (c) =>
          Effect.flatMap(
            Ref.updateAndGet(attempts, (a) => [...a, c.id]),
            (a) => (a.length < 3 ? Effect.fail(reset()) : Effect.succeed("done"))
          )
        )
      )
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), "done")
      assert.deepStrictEqual(yield* Ref.get(attempts), [1, 2, 3], "each attempt on a fresh item")
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [1, 2])
    })
  )

  it.scoped("gives up after the schedule's attempts, and never retries caller faults", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const calls = yield* Ref.make(0)
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        retry: Schedule.recurs(2)
      })
      const failing = pool.use("a", () =>
        Effect.zipRight(
          Ref.update(calls, (n) => n + 1),
          Effect.fail(reset())
        )
      )
      assert.isTrue(Exit.isFailure(yield* Effect.exit(failing)))
      assert.strictEqual(yield* Ref.get(calls), 3)
      yield* Ref.set(calls, 0)
      yield* Effect.exit(
        pool.use("a", () =>
          Effect.zipRight(
            Ref.update(calls, (n) => n + 1),
            Effect.fail("bad input")
          )
        )
      )
      assert.strictEqual(yield* Ref.get(calls), 1)
    })
  )

  it.scoped("interrupting the caller during a backoff stops the retries at once", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const calls = yield* Ref.make(0)
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        retry: Schedule.spaced("10 seconds")
      })
      const fiber = yield* Effect.fork(
        pool.use("a", () =>
          Effect.zipRight(
            Ref.update(calls, (n) => n + 1),
            Effect.fail(reset())
          )
        )
      )
      yield* settle
      yield* Fiber.interrupt(fiber)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(calls), 1)
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.inUse, stats.size], [0, 0])
    })
  )

  it("recognises Node's connection errors, wrapped or not", () => {
    assert.isTrue(HealthCheck.isConnectionError(reset()))
    assert.isTrue(HealthCheck.isConnectionError(new Error("socket hang up")))
    assert.isTrue(HealthCheck.isConnectionError({ _tag: "RequestError", cause: { code: "EPIPE" } }))
    assert.isTrue(HealthCheck.isConnectionError(new Cause.TimeoutException()))
    assert.isFalse(HealthCheck.isConnectionError(new Error("syntax error at or near SELECT")))
    assert.isFalse(HealthCheck.isConnectionError("ECONNRESET as a bare string is no error object"))
  })
})

describe("create protection", () => {
  it.scoped("createTimeout fails the caller with CreateTimeout and releases what was acquired", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.zipRight(resources.acquire(key), Effect.never),
        createTimeout: "2 seconds"
      })
      const fiber = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      assert.strictEqual(yield* Ref.get(resources.alive), 1)
      yield* TestClock.adjust("2 seconds")
      assert.isTrue(failedWith(yield* Fiber.join(fiber), "CreateTimeout"))
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
    })
  )

  it.scoped("at most createConcurrency creations per key are in flight", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const inFlight = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: (key: string) =>
          Effect.gen(function* () {
            const now = yield* Ref.updateAndGet(inFlight, (n) => n + 1)
            yield* Ref.update(peak, (p) => Math.max(p, now))
            yield* Deferred.await(gate)
            yield* Ref.update(inFlight, (n) => n - 1)
            return yield* resources.acquire(key)
          }),
        maxPerKey: 10,
        createConcurrency: 2
      })
      const fibers = yield* Effect.forEach(Array.from({ length: 8 }), () =>
        Effect.fork(pool.use("a", () => Effect.yieldNow()))
      )
      yield* settle
      assert.strictEqual(yield* Ref.get(inFlight), 2)
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(fibers, Fiber.join)
      assert.strictEqual(yield* Ref.get(peak), 2)
    })
  )
})

describe("circuit breaker", () => {
  it.scoped("trips at the threshold, blocks connects while open, probes, then closes or reopens", () =>
    Effect.gen(function* () {
      const connects = yield* Ref.make(0)
      const up = yield* Ref.make(false)
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: (key: string): Effect.Effect<Conn, unknown, Scope.Scope> =>
          Effect.zipRight(
            Ref.update(connects, (n) => n + 1),
            Effect.flatMap(
              Ref.get(up),
              (isUp): Effect.Effect<Conn, unknown, Scope.Scope> =>
                isUp ? resources.acquire(key) : Effect.fail(reset())
            )
          ),
        createBackoff: false,
        breaker: { failures: 3, reset: "60 seconds", halfOpenProbes: 2 },
        describeKey: (k) => k
      })
      const call = Effect.exit(pool.use("a", Effect.succeed))
      // No trip below the threshold.
      yield* call
      yield* call
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "closed")
      // Trip at it.
      yield* call
      const open = yield* pool.stats
      assert.strictEqual(open.perKey[0].health.state, "open")
      assert.strictEqual(open.perKey[0].health.retryAt, 60_000)
      // Zero connects while open.
      const before = yield* Ref.get(connects)
      const rejected = yield* call
      assert.isTrue(failedWith(rejected, "CircuitOpen"))
      if (Exit.isFailure(rejected) && rejected.cause._tag === "Fail") {
        assert.deepInclude(rejected.cause.error, { key: "a", retryAfterMillis: 60_000, consecutiveFailures: 3 })
      }
      yield* TestClock.adjust("59 seconds")
      yield* call
      assert.strictEqual(yield* Ref.get(connects), before)
      // Half-open: one probe fails -> open again.
      yield* TestClock.adjust("1 second")
      yield* call
      assert.strictEqual(yield* Ref.get(connects), before + 1)
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "open")
      // Half-open again: exactly two probes, both succeed -> closed.
      yield* TestClock.adjust("60 seconds")
      yield* Ref.set(up, true)
      const gate = yield* Deferred.make<void>()
      const probes = yield* Effect.forEach([1, 2], () => Effect.fork(pool.use("a", () => Deferred.await(gate))))
      yield* settle
      assert.isTrue(failedWith(yield* call, "CircuitOpen"), "a third caller is not a probe")
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.forEach(probes, Fiber.join)
      const closed = (yield* pool.stats).perKey[0].health
      assert.strictEqual(closed.breaker, "closed")
      assert.deepStrictEqual(
        closed.transitions.map((t) => `${t.from}->${t.to}`),
        ["closed->open", "open->half-open", "half-open->open", "open->half-open", "half-open->closed"]
      )
      assert.isTrue(Exit.isSuccess(yield* call))
    })
  )

  it.scoped("caller faults do not count; waiters of a key fail when its circuit opens", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        maxPerKey: 1,
        breaker: { failures: 1, reset: "1 minute" }
      })
      for (let i = 0; i < 5; i++) yield* Effect.exit(pool.use("a", () => Effect.fail("bad request")))
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "closed")
      const gate = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        pool.use("a", () => Effect.zipRight(Deferred.await(gate), Effect.fail(reset())))
      )
      yield* settle
      const waiter = yield* Effect.fork(Effect.exit(pool.use("a", Effect.succeed)))
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.await(holder)
      assert.isTrue(failedWith(yield* Fiber.join(waiter), "CircuitOpen"))
    })
  )

  it.scoped("a failing key is remembered while empty, and forgotten once quiet", () =>
    Effect.gen(function* () {
      const pool = yield* KeyedPool.make({
        acquire: (_: string) => Effect.fail(reset()),
        createBackoff: false,
        breaker: { failures: 2, reset: "1 minute" },
        cleanupInterval: "1 minute"
      })
      yield* Effect.exit(pool.use("a", Effect.succeed))
      yield* Effect.exit(pool.use("a", Effect.succeed))
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "open")
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual((yield* pool.stats).keys, 0)
    })
  )
})
