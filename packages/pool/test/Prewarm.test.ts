/**
 * Pre-warming closes at once what it had to destroy on the way: idle items of
 * credentials a pre-warm retired, even when it then had nothing to create.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Ref, Scope } from "effect"
import { KeyedPool } from "../src/index.js"
import { makeResources } from "./utils/resource.js"

interface UserKey {
  readonly user: string
  readonly token: string
}

describe("KeyedPool.prewarm", () => {
  it.scoped("closes idle items of retired credentials at once even when it creates nothing", () =>
    Effect.gen(function* () {
      const scope = yield* Effect.scope
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: (key: UserKey) => resources.acquire(`${key.user}:${key.token}`),
        keyId: (key) => key.user,
        fingerprint: (key) => key.token,
        maxPerKey: 2
      }).pipe(Scope.extend(scope))
      const leaseScope = yield* Scope.make()
      const leased = yield* pool.get({ user: "u", token: "t1" }).pipe(Scope.extend(leaseScope))
      const idle = yield* pool.use({ user: "u", token: "t1" }, Effect.succeed)
      assert.notStrictEqual(leased.id, idle.id)
      // The new token retires the idle item; the leased one still counts, so one item is there already.
      yield* pool.prewarm({ user: "u", token: "t2" }, 1)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [idle.id])
      yield* Scope.close(leaseScope, Exit.void)
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [idle.id, leased.id])
    })
  )
})
