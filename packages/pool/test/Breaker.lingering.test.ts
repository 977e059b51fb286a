/**
 * A key kept only because its circuit remembers failures (it has no items
 * and no waiters) is dropped by cleanup once the failures are old, even if
 * callers were refused by its open circuit meanwhile: a refusal puts the key
 * back among those cleanup looks at. Found by the kernel-level model test.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, TestClock } from "effect"
import * as KeyedPool from "../src/KeyedPool.js"

describe("KeyedPool: a key kept for its open circuit", () => {
  it.scoped("is dropped by cleanup once quiet, though callers were refused meanwhile", () =>
    Effect.gen(function* () {
      const pool = yield* KeyedPool.make({
        acquire: (_: string) => Effect.fail("down"),
        breaker: { failures: 1, reset: "1 second" },
        createBackoff: false
      })
      const first = yield* Effect.exit(Effect.scoped(pool.get("a")))
      assert.isTrue(Exit.isFailure(first))
      const refused = yield* Effect.flip(Effect.scoped(pool.get("a")))
      assert.strictEqual(typeof refused === "object" ? refused._tag : refused, "CircuitOpen")
      assert.strictEqual((yield* pool.stats).keys, 1)
      yield* TestClock.adjust("3 seconds")
      const report = yield* pool.cleanup
      assert.strictEqual(report.keysDropped, 1)
      assert.strictEqual((yield* pool.stats).keys, 0)
    })
  )
})
