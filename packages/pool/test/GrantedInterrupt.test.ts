/**
 * A caller admitted with a creation of its own (nothing idle, room to grow)
 * and interrupted before its fiber starts that creation gives the
 * reservation back exactly once: the key does not starve. Found by the
 * kernel-level model test; the interrupt lands during the admission step
 * (here from the user's `keyId`, which runs inside it), so it is delivered
 * when the caller starts waiting.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import * as KeyedPool from "../src/KeyedPool.js"

describe("KeyedPool: an interrupt between a granted creation and its start", () => {
  it.scoped("frees the reservation, and the key serves the next caller", () =>
    Effect.gen(function* () {
      let target: Fiber.RuntimeFiber<unknown, unknown> | undefined
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.succeed(key),
        maxPerKey: 1,
        keyId: (key: string) => {
          const fiber = target
          target = undefined
          fiber?.unsafeInterruptAsFork(fiber.id())
          return key
        }
      })
      const caller = yield* Effect.fork(
        Effect.withFiberRuntime<string, unknown>((fiber) => {
          target = fiber
          return Effect.scoped(pool.get("a"))
        })
      )
      const exit = yield* Fiber.await(caller)
      assert.isTrue(Exit.isInterrupted(exit))
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.creating, stats.waiting, stats.size], [0, 0, 0])
      assert.strictEqual(yield* Effect.scoped(pool.get("a")), "a")
    })
  )
})
