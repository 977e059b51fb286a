/**
 * Regressions: shutdown is bounded by `drainTimeout`, runs every finalizer
 * once, and no caller runs another key's finalizer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Ref, Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { type Conn, makeResources, settle } from "./utils/resource.js"

/** A connection error as Node reports it. */
const reset = () => Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })

/** Counting resources whose `n`-th creation onwards opens its connection, then hangs. */
const hangingFrom = (n: number) =>
  Effect.gen(function* () {
    const resources = yield* makeResources
    const acquire = (key: string) =>
      Effect.flatMap(resources.acquire(key), (conn) => (conn.id >= n ? Effect.never : Effect.succeed(conn)))
    return { resources, acquire }
  })

/** Counting resources whose finalizer never ends for the keys given. */
const stuckFinalizers = (stuck: ReadonlySet<string>) =>
  Effect.gen(function* () {
    const started = yield* Ref.make<ReadonlyArray<string>>([])
    let id = 0
    const acquire = (key: string) =>
      Effect.acquireRelease(
        Effect.sync((): Conn => ({ key, id: ++id })),
        (conn) =>
          Effect.zipRight(
            Ref.update(started, (s) => [...s, `${conn.key}#${conn.id}`]),
            stuck.has(conn.key) ? Effect.never : Effect.void
          )
      )
    return { started, acquire }
  })

describe("shutdown", () => {
  it.effect(
    "a refill in flight when the pool closes frees its reservation and closes what its acquire opened (close used to wait the whole drainTimeout and leave it open)",
    () =>
      Effect.gen(function* () {
        const { resources, acquire } = yield* hangingFrom(2)
        const scope = yield* Scope.make()
        const pool = yield* KeyedPool.make({ acquire, minIdlePerKey: 1, drainTimeout: "10 seconds" }).pipe(
          Scope.extend(scope)
        )
        const done = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(pool.use("a", () => Deferred.await(done)))
        yield* settle
        yield* pool.cleanup // no idle item: the key is refilled, and that connect opens a connection, then hangs
        yield* settle
        assert.strictEqual(yield* Ref.get(resources.alive), 2)
        assert.strictEqual((yield* pool.stats).creating, 1)
        yield* Deferred.succeed(done, undefined)
        yield* Fiber.join(holder)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* settle
        assert.isNotNull(closing.unsafePoll(), "closed at once: nothing was leased")
        assert.strictEqual(yield* Ref.get(resources.alive), 0, "the refill's connection is closed")
        assert.strictEqual((yield* pool.stats).creating, 0)
      })
  )

  it.effect(
    "a refill started by a failed validation can be interrupted, so closing the pool does not hang on its connect (it used to inherit the caller's uninterruptible mask)",
    () =>
      Effect.gen(function* () {
        const { resources, acquire } = yield* hangingFrom(3)
        const scope = yield* Scope.make()
        const pool = yield* KeyedPool.make({
          acquire,
          minIdlePerKey: 2,
          drainTimeout: "1 second",
          validate: (c: Conn) => (c.id === 1 ? Effect.fail(reset()) : Effect.void)
        }).pipe(Scope.extend(scope))
        yield* pool.use("a", Effect.succeed)
        // Validation fails on item 1: the caller gets item 2; the refill back to 2 idle connects item 3, which hangs.
        assert.strictEqual((yield* pool.use("a", Effect.succeed)).id, 2)
        yield* settle
        assert.strictEqual(yield* Ref.get(resources.created), 3)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* settle
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.isNotNull(closing.unsafePoll(), "the pool closed")
        assert.strictEqual(yield* Ref.get(resources.alive), 0)
      })
  )

  it.effect(
    "a finalizer that hangs holds shutdown no longer than drainTimeout, and every other finalizer runs once (it used to block shutdown for ever)",
    () =>
      Effect.gen(function* () {
        const { acquire, started } = yield* stuckFinalizers(new Set(["stuck", "stuck-leased"]))
        const scope = yield* Scope.make()
        const pool = yield* KeyedPool.make({ acquire, drainTimeout: "1 second" }).pipe(Scope.extend(scope))
        yield* pool.use("stuck", Effect.succeed)
        yield* pool.use("a", Effect.succeed)
        yield* pool.use("b", Effect.succeed)
        const holder = yield* Effect.fork(pool.use("stuck-leased", () => Effect.never))
        yield* settle
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* settle
        assert.deepStrictEqual([...(yield* Ref.get(started))].sort(), ["a#2", "b#3", "stuck#1"], "idle items at once")
        assert.isNull(closing.unsafePoll(), "waits for the lease")
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.isNotNull(closing.unsafePoll(), "done at drainTimeout")
        assert.isTrue(Exit.isInterrupted((yield* Fiber.await(holder)) as Exit.Exit<unknown, unknown>))
        const all = yield* Ref.get(started)
        assert.deepStrictEqual(
          [...all].sort(),
          ["a#2", "b#3", "stuck#1", "stuck-leased#4"],
          "each finalizer began once"
        )
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.size, stats.destroyed], [0, 4])
      })
  )

  it.effect(
    "evicting another key's idle item to make room never runs its finalizer on the caller's fiber (a hanging finalizer used to block the caller past acquireTimeout)",
    () =>
      Effect.gen(function* () {
        const { acquire, started } = yield* stuckFinalizers(new Set(["a"]))
        const scope = yield* Scope.make()
        const pool = yield* KeyedPool.make({ acquire, maxTotal: 1, acquireTimeout: "1 second", drainTimeout: 0 }).pipe(
          Scope.extend(scope)
        )
        yield* pool.use("a", Effect.succeed)
        const caller = yield* Effect.fork(pool.use("b", Effect.succeed))
        yield* settle
        const exit = caller.unsafePoll()
        assert.isTrue(exit !== null && Exit.isSuccess(exit), "served at once")
        assert.deepStrictEqual(yield* Ref.get(started), ["a#1"], "the evicted item's finalizer started")
        yield* Scope.close(scope, Exit.void)
      })
  )
})
