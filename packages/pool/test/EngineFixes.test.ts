/**
 * Regression tests of two engine fixes: a circuit past its reset time shows
 * as half-open in stats (it admits a probe), and a `fingerprint` that throws
 * while a creation registers its item no longer strands the reservation.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Ref, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { makeResources } from "./utils/resource.js"

/** A connection failure the default classifier recognises. */
const reset = () => Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })

describe("engine fixes", () => {
  it.scoped("stats report a circuit half-open once its reset time has passed, before any probe (it stayed open)", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: r.acquire,
        breaker: { failures: 1, reset: "1 minute" },
        describeKey: (k) => k
      })
      yield* Effect.exit(pool.use("a", () => Effect.fail(reset())))
      const open = (yield* pool.stats).perKey[0].health
      assert.deepStrictEqual([open.breaker, open.state, open.retryAt], ["open", "open", 60_000])
      yield* TestClock.adjust("59 seconds")
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "open")
      yield* TestClock.adjust("1 second")
      const due = (yield* pool.stats).perKey[0].health
      assert.deepStrictEqual([due.breaker, due.state, due.retryAt], ["half-open", "degraded", null])
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(pool.use("a", Effect.succeed))), "the probe passes")
      assert.strictEqual((yield* pool.stats).perKey[0].health.breaker, "closed")
    })
  )

  it.scoped(
    "a fingerprint that throws when a creation ends frees the reservation and fails the caller with the defect (it used to strand it)",
    () =>
      Effect.gen(function* () {
        const r = yield* makeResources
        let calls = 0
        let throwOn = 2
        const pool = yield* KeyedPool.make({
          acquire: r.acquire,
          maxPerKey: 1,
          maxTotal: 1,
          acquireTimeout: "1 second",
          createBackoff: false,
          // Read on admission (call 1) and again for the item once created (call 2).
          fingerprint: (key: string) => {
            if (++calls === throwOn) throw new Error("vault unreachable")
            return `${key}-v1`
          }
        })
        const exit = yield* Effect.exit(pool.use("a", Effect.succeed))
        assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), "the caller gets the defect")
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.size, stats.creating, stats.inUse, stats.waiting], [0, 0, 0, 0])
        assert.strictEqual(yield* Ref.get(r.alive), 0, "what the creation opened is closed")
        throwOn = -1
        const conn = yield* pool.use("a", Effect.succeed)
        assert.strictEqual(conn.id, 2, "the limit of 1 is free again: a fresh creation")
        assert.strictEqual((yield* pool.stats).size, 1)
      })
  )

  it.scoped("a fingerprint that throws on admission fails the caller and changes nothing", () =>
    Effect.gen(function* () {
      const r = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: r.acquire,
        fingerprint: (key: string) => {
          if (key === "bad") throw new Error("no credentials")
          return key
        }
      })
      const exit = yield* Effect.exit(pool.use("bad", Effect.succeed))
      assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.keys, stats.size, stats.creating], [0, 0, 0])
      assert.strictEqual((yield* pool.use("good", Effect.succeed)).key, "good")
    })
  )
})
