/**
 * What a creation runs with: the pool's fiber refs and services (it makes an
 * item any caller may get, so nothing of the caller who happened to ask
 * first), the item's own scope, and — for an `acquireRelease` resource — the
 * same fiber refs again in its release. The engine starts those fibers on a
 * runtime of its own that keeps only each fiber ref's current value (see
 * `poolRuntime`): these tests hold it to the values.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, FiberRef, Ref, Scope } from "effect"
import { KeyedPool } from "../src/index.js"
import { settle } from "./utils/resource.js"

class Upstream extends Context.Tag("test/Upstream")<Upstream, { readonly url: string }>() {}

describe("a creation's runtime", () => {
  it.scoped("has the pool's fiber refs and services, not the caller's, in acquire and in the release", () =>
    Effect.gen(function* () {
      const tenant = yield* FiberRef.make("none")
      const seen = yield* Ref.make<ReadonlyArray<string>>([])
      const note = (what: string) =>
        Effect.flatMap(FiberRef.get(tenant), (value) => Ref.update(seen, (all) => [...all, `${what}: ${value}`]))
      const scope = yield* Scope.make()
      const pool = yield* KeyedPool.make({
        acquire: (key: string) =>
          Effect.gen(function* () {
            const { url } = yield* Upstream
            yield* Effect.acquireRelease(note(`acquire ${key} at ${url}`), () => note(`release ${key}`))
            return key
          })
      }).pipe(
        Effect.locally(tenant, "the pool's"),
        Effect.provideService(Upstream, { url: "db:5432" }),
        Scope.extend(scope)
      )

      yield* pool.use("a", () => note("caller")).pipe(Effect.locally(tenant, "a caller's"))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(yield* Ref.get(seen), [
        "acquire a at db:5432: the pool's",
        "caller: a caller's",
        "release a: the pool's"
      ])
    })
  )

  it.scoped("gives acquire the item's own scope: what acquire adds to it closes with the item", () =>
    Effect.gen(function* () {
      const closed = yield* Ref.make<ReadonlyArray<string>>([])
      const pool = yield* KeyedPool.make({
        acquire: (key: string) =>
          Effect.gen(function* () {
            // A background fiber the connection owns, and a finalizer: both end with the item.
            yield* Effect.forkScoped(
              Effect.onInterrupt(Effect.never, () => Ref.update(closed, (c) => [...c, `reader ${key}`]))
            )
            yield* Effect.addFinalizer(() => Ref.update(closed, (c) => [...c, `socket ${key}`]))
            return key
          })
      })
      yield* pool.use("a", Effect.succeed)
      yield* pool.use("b", Effect.succeed)
      yield* settle // the readers start
      assert.deepStrictEqual(yield* Ref.get(closed), [])
      yield* pool.invalidate("a")
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(closed), ["socket a", "reader a"])
    })
  )
})
