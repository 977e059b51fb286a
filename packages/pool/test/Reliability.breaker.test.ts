/**
 * Regressions: what the circuit breaker counts. Only a caller's lease, a
 * creation or a health check gives a verdict; putting an item away never
 * does.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Ref, type Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { type Conn, failedWith, makeResources, settle } from "./utils/resource.js"

/** A connection error as Node reports it. */
const reset = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })

/** An upstream that can go down: then connects fail with ECONNRESET. */
const upstream = Effect.gen(function* () {
  const resources = yield* makeResources
  const down = yield* Ref.make(false)
  const acquire = (key: string): Effect.Effect<Conn, unknown, Scope.Scope> =>
    Effect.flatMap(
      Ref.get(down),
      (isDown): Effect.Effect<Conn, unknown, Scope.Scope> => (isDown ? Effect.fail(reset()) : resources.acquire(key))
    )
  return { resources, down, acquire }
})

const breakerOf = <K, A, E>(pool: KeyedPool.KeyedPool<K, A, E>) =>
  Effect.map(pool.stats, (stats) => stats.perKey[0].health)

describe("circuit breaker accounting", () => {
  it.scoped(
    "failed health checks open the circuit (each failure used to be undone by a success when the broken item was put away)",
    () =>
      Effect.gen(function* () {
        const { acquire } = yield* upstream
        const pool = yield* KeyedPool.make({
          acquire,
          breaker: { failures: 2, reset: "1 minute" },
          healthCheckInterval: "30 seconds",
          healthCheck: { check: () => Effect.fail(reset()) }
        })
        yield* Effect.scoped(Effect.all([pool.get("a"), pool.get("a")]))
        yield* TestClock.adjust("30 seconds")
        yield* settle
        const health = yield* breakerOf(pool)
        assert.strictEqual(health.breaker, "open")
        assert.strictEqual(health.consecutiveFailures, 2)
      })
  )

  /** Opens the circuit of key "a" (2 failures) while `idle` items stay idle. */
  const openWithIdle = (idle: number, validate: (c: Conn) => Effect.Effect<unknown, unknown>) =>
    Effect.gen(function* () {
      const { acquire, down } = yield* upstream
      const pool = yield* KeyedPool.make({
        acquire,
        createBackoff: false,
        breaker: { failures: 2, reset: "1 minute", halfOpenProbes: 1 },
        validate
      })
      yield* Effect.scoped(Effect.all(Array.from({ length: idle + 2 }, () => pool.get("a"))))
      yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
      yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
      assert.strictEqual((yield* breakerOf(pool)).breaker, "open")
      assert.strictEqual((yield* pool.stats).idle, idle)
      yield* Ref.set(down, true)
      yield* TestClock.adjust("1 minute")
      return pool
    })

  it.scoped(
    "a half-open probe whose validation fails does not close the circuit: it goes on to a fresh item, whose outcome decides (it used to close it)",
    () =>
      Effect.gen(function* () {
        const validating = yield* Ref.make(false)
        const pool = yield* openWithIdle(1, () =>
          Effect.flatMap(Ref.get(validating), (on) => (on ? Effect.fail(reset()) : Effect.void))
        )
        yield* Ref.set(validating, true)
        const probe = yield* Effect.exit(pool.use("a", Effect.succeed))
        assert.isTrue(
          Exit.isFailure(probe) && !failedWith(probe, "CircuitOpen"),
          "the probe's fresh connect failed with the resource's error"
        )
        const health = yield* breakerOf(pool)
        assert.deepStrictEqual(
          health.transitions.map((t) => `${t.from}->${t.to}`),
          ["closed->open", "open->half-open", "half-open->open"]
        )
      })
  )

  it.scoped(
    "a half-open probe interrupted during validation does not close the circuit, and the next caller probes (it used to close it)",
    () =>
      Effect.gen(function* () {
        const validating = yield* Ref.make(false)
        const pool = yield* openWithIdle(1, () =>
          Effect.flatMap(Ref.get(validating), (on) => (on ? Effect.never : Effect.void))
        )
        yield* Ref.set(validating, true)
        const probe = yield* Effect.fork(pool.use("a", Effect.succeed))
        yield* settle
        yield* Fiber.interrupt(probe)
        assert.strictEqual((yield* breakerOf(pool)).breaker, "half-open")
        yield* Ref.set(validating, false)
        // The next caller is a probe: its validation passes and the lease succeeds.
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(pool.use("a", Effect.succeed))))
        assert.strictEqual((yield* breakerOf(pool)).breaker, "closed")
      })
  )

  it.scoped(
    "an open circuit keeps its consecutive-failure count until a probe succeeds (a lease begun before it opened used to reset it)",
    () =>
      Effect.gen(function* () {
        const { acquire } = yield* upstream
        const pool = yield* KeyedPool.make({
          acquire,
          createBackoff: false,
          breaker: { failures: 2, reset: "1 minute" },
          describeKey: (k) => k
        })
        const done = yield* Deferred.make<void>()
        const early = yield* Effect.fork(pool.use("a", () => Deferred.await(done)))
        yield* settle
        yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
        yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
        assert.strictEqual((yield* breakerOf(pool)).breaker, "open")
        yield* Deferred.succeed(done, undefined)
        yield* Fiber.join(early)
        const health = yield* breakerOf(pool)
        assert.deepStrictEqual([health.breaker, health.consecutiveFailures], ["open", 2])
        const rejected = yield* Effect.exit(pool.use("a", Effect.succeed))
        assert.isTrue(failedWith(rejected, "CircuitOpen"))
        if (Exit.isFailure(rejected) && rejected.cause._tag === "Fail") {
          assert.deepInclude(rejected.cause.error, { consecutiveFailures: 2 })
        }
      })
  )
})
