/**
 * A key whose items are all idle when its credentials change stays one key:
 * the caller that notices the change (its items retired) is served by the
 * key's own slot, not by a slot dropped from the index meanwhile, so the
 * key's limit and stats still hold. Found by the kernel-level model test.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as KeyedPool from "../src/KeyedPool.js"

describe("KeyedPool: credentials rotated while every item of the key is idle", () => {
  it.scoped("the caller that retires the idle items leases from the key's own slot", () =>
    Effect.gen(function* () {
      let version = 1
      let created = 0
      const pool = yield* KeyedPool.make({
        acquire: (key: string) => Effect.sync(() => `${key}#${++created}`),
        maxPerKey: 1,
        fingerprint: () => `v${version}`
      })
      assert.strictEqual(yield* Effect.scoped(pool.get("a")), "a#1")
      version = 2
      yield* Effect.scoped(
        Effect.gen(function* () {
          assert.strictEqual(yield* pool.get("a"), "a#2")
          const stats = yield* pool.stats
          assert.deepStrictEqual([stats.keys, stats.inUse, stats.perKey[0]?.inUse], [1, 1, 1])
        })
      )
      const after = yield* pool.stats
      assert.deepStrictEqual([after.keys, after.idle, after.destroyed], [1, 1, 1])
    })
  )
})
