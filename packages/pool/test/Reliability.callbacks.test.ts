/**
 * Regressions: user callbacks that throw instead of returning an Effect, and
 * resources whose values compare equal.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Ref, Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { type Conn, makeResources, settle } from "./utils/resource.js"

const diedWith = (exit: Exit.Exit<unknown, unknown>, message: string): boolean =>
  Exit.isFailure(exit) &&
  Cause.isDie(exit.cause) &&
  Cause.squash(exit.cause) instanceof Error &&
  (Cause.squash(exit.cause) as Error).message === message

describe("user callbacks that throw", () => {
  it.effect(
    "an acquire that throws fails its caller with the defect and frees the creation slot (it used to keep the slot reserved for ever)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({
          acquire: (url: string) => {
            if (url === "not a url") throw new TypeError("Invalid URL")
            return resources.acquire(url)
          },
          maxPerKey: 2,
          createBackoff: false,
          acquireTimeout: "1 second"
        })
        for (let i = 0; i < 3; i++) {
          // The third would wait for a slot, and time out, if the first two had leaked theirs.
          const caller = yield* Effect.fork(Effect.exit(pool.use("not a url", Effect.succeed)))
          yield* settle
          yield* TestClock.adjust("1 second")
          assert.isTrue(diedWith(yield* Fiber.join(caller), "Invalid URL"), `call ${i + 1} gets the defect`)
        }
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.creating, stats.size, stats.timeouts, stats.failures], [0, 0, 0, 3])
        assert.strictEqual((yield* pool.use("ok", Effect.succeed)).key, "ok")
      }).pipe(Effect.scoped)
  )

  it.scoped(
    "a use body that throws fails its caller with the defect and ends the lease (it used to stay in use for ever)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxPerKey: 1 })
        const exit = yield* Effect.exit(
          pool.use("a", (): Effect.Effect<void> => {
            throw new Error("bug in the caller")
          })
        )
        assert.isTrue(diedWith(exit, "bug in the caller"))
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.inUse, stats.idle], [0, 1])
        assert.strictEqual((yield* pool.use("a", Effect.succeed)).id, 1, "the item came back")
      })
  )

  it.scoped(
    "a validate that throws counts as a failed validation: the item is destroyed and the caller gets a fresh one (it used to stay leased for ever)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({
          acquire: resources.acquire,
          maxPerKey: 2,
          validate: (c: Conn) => {
            if (c.id === 1) throw new TypeError("validate read a closed socket")
            return Effect.void
          }
        })
        yield* pool.use("a", Effect.succeed)
        const served = yield* pool.use("a", Effect.succeed)
        assert.strictEqual(served.id, 2)
        assert.deepStrictEqual(yield* Ref.get(resources.closed), [1])
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.inUse, stats.idle, stats.size], [0, 1, 1])
        assert.isFalse(stats.perKey[0].health.lastCheck?.ok)
      })
  )

  for (const kind of ["healthCheck", "heartbeat"] as const) {
    it.scoped(
      `a ${kind} that throws destroys its item and puts back the items checked beside it (it used to strand them all)`,
      () =>
        Effect.gen(function* () {
          const resources = yield* makeResources
          const run = (c: Conn): Effect.Effect<void> => {
            if (c.id === 2) throw new TypeError("ping on a closed socket")
            return Effect.void
          }
          const pool = yield* KeyedPool.make({
            acquire: resources.acquire,
            maxPerKey: 4,
            ...(kind === "healthCheck"
              ? { healthCheck: { check: run }, healthCheckInterval: "30 seconds" }
              : { heartbeat: { beat: run }, heartbeatInterval: "30 seconds" })
          })
          yield* Effect.scoped(Effect.all([pool.get("a"), pool.get("a"), pool.get("a"), pool.get("a")]))
          yield* TestClock.adjust("30 seconds")
          yield* settle
          assert.deepStrictEqual(yield* Ref.get(resources.closed), [2])
          const stats = yield* pool.stats
          assert.deepStrictEqual([stats.inUse, stats.perKey[0].checking, stats.idle], [0, 0, 3])
          assert.isTrue(stats.perKey[0].health.history.some((r) => !r.ok))
        })
    )
  }

  it.scoped(
    "an isConnectionError that throws leaves the caller its own error and treats the item as broken (it used to replace the error with its defect)",
    () =>
      Effect.gen(function* () {
        const resources = yield* makeResources
        const pool = yield* KeyedPool.make({
          acquire: resources.acquire,
          maxPerKey: 1,
          isConnectionError: (error: unknown) => (error as { code: string }).code === "ECONNRESET"
        })
        const exit = yield* Effect.exit(pool.use("a", () => Effect.fail(null)))
        assert.deepStrictEqual(exit, Exit.fail(null))
        assert.deepStrictEqual(yield* Ref.get(resources.closed), [1], "the item it judged is destroyed")
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.inUse, stats.size], [0, 0])
      })
  )
})

describe("items that compare equal", () => {
  /** A permit-like resource: every item is the number 1. */
  const permits = Effect.gen(function* () {
    const opened = yield* Ref.make(0)
    const closed = yield* Ref.make(0)
    const acquire = (_: string) =>
      Effect.acquireRelease(
        Effect.as(
          Ref.update(opened, (n) => n + 1),
          1
        ),
        () => Ref.update(closed, (n) => n + 1)
      )
    return { opened, closed, acquire }
  })

  it.effect(
    "equal values are each counted, interrupted and closed at shutdown (items tracked by value used to be lost)",
    () =>
      Effect.gen(function* () {
        const { acquire, closed, opened } = yield* permits
        const scope = yield* Scope.make()
        const pool = yield* KeyedPool.make({ acquire, maxPerKey: 3, drainTimeout: "1 second" }).pipe(
          Scope.extend(scope)
        )
        const holders = yield* Effect.forEach([1, 2, 3], () => Effect.fork(pool.use("permits", () => Effect.never)))
        yield* settle
        assert.strictEqual((yield* pool.items).length, 3)
        assert.strictEqual(yield* Ref.get(opened), 3)
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* settle
        yield* TestClock.adjust("1 second")
        yield* settle
        assert.isNotNull(closing.unsafePoll(), "shutdown ended")
        for (const holder of holders) {
          const exit = holder.unsafePoll()
          assert.isTrue(exit !== null && Exit.isInterrupted(exit), "every holder was interrupted")
        }
        assert.strictEqual(yield* Ref.get(closed), 3, "every finalizer ran once")
      })
  )

  it.scoped(
    "invalidate of a value held by several leases destroys the caller's own (a map by value used to pick the last one made)",
    () =>
      Effect.gen(function* () {
        const { acquire, closed } = yield* permits
        const pool = yield* KeyedPool.make({ acquire, maxPerKey: 2 })
        const go = yield* Deferred.make<void>()
        const done = yield* Deferred.make<void>()
        // The caller leases first; another lease of the same value comes after it.
        const caller = yield* Effect.fork(
          pool.use("permits", (n) => Effect.zipRight(Deferred.await(go), pool.invalidate(n)))
        )
        yield* settle
        const other = yield* Effect.fork(pool.use("permits", () => Deferred.await(done)))
        yield* settle
        yield* Deferred.succeed(go, undefined)
        yield* Fiber.join(caller)
        assert.strictEqual(yield* Ref.get(closed), 1, "the caller's own lease was destroyed")
        const stats = yield* pool.stats
        assert.deepStrictEqual([stats.inUse, stats.idle, stats.size], [1, 0, 1], "the other lease is untouched")
        yield* Deferred.succeed(done, undefined)
        yield* Fiber.join(other)
        assert.deepStrictEqual([(yield* pool.stats).idle, yield* Ref.get(closed)], [1, 1])
      })
  )
})
