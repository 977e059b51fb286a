/**
 * The creation gate (a permit taken before each creation and held by the
 * item, as a cluster-wide connection budget does) and the operations a budget
 * needs from the pool: evicting idle items and retiring all of them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Deferred, Effect, Exit, Fiber, Ref, Scope, TestClock } from "effect"
import { KeyedPool, Pool } from "../src/index.js"
import { failedWith, makeResources, settle } from "./utils/resource.js"

class Refused extends Data.TaggedError("Refused")<{ readonly key: string }> {}

/** A limit of `permits`, counted in a Ref: taking one adds its return to the scope it runs in. */
const makePermits = (permits: number) =>
  Effect.gen(function* () {
    const held = yield* Ref.make(0)
    const taken = yield* Ref.make<ReadonlyArray<string>>([])
    const take = (context: KeyedPool.GateContext<string>) =>
      Effect.gen(function* () {
        const key = context.key
        if ((yield* Ref.get(held)) >= permits && !(yield* context.evictIdle)) {
          return yield* Effect.fail(new Refused({ key }))
        }
        // An evicted item gives its permit back on a fiber of its own: wait for it.
        while ((yield* Ref.get(held)) >= permits) yield* Effect.yieldNow()
        yield* Effect.acquireRelease(
          Ref.update(held, (n) => n + 1),
          () => Ref.update(held, (n) => n - 1)
        )
        yield* Ref.update(taken, (keys) => [...keys, key])
      })
    return { held, taken, take }
  })

describe("KeyedPool gate", () => {
  it.scoped("takes a permit before each creation and gives it back when the item is destroyed", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const permits = yield* makePermits(10)
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, gate: permits.take, maxPerKey: 3 })
      const scope = yield* Scope.make()
      const a = yield* pool.get("a").pipe(Scope.extend(scope))
      yield* pool.get("a").pipe(Scope.extend(scope))
      yield* pool.get("b").pipe(Scope.extend(scope))
      assert.strictEqual(yield* Ref.get(permits.held), 3)
      yield* Scope.close(scope, Exit.void)
      // Leases of existing items take no permit.
      yield* Effect.scoped(pool.get("a"))
      assert.deepStrictEqual(yield* Ref.get(permits.taken), ["a", "a", "b"])
      yield* pool.invalidate(a)
      yield* settle
      assert.strictEqual(yield* Ref.get(permits.held), 2)
      assert.strictEqual(yield* Ref.get(resources.alive), 2)
    })
  )

  it.scoped("a refusal fails the caller with the gate's error and counts no connection failure", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        gate: ({ key }) => Effect.fail(new Refused({ key })),
        breaker: { failures: 1, reset: "1 minute" }
      })
      const first = yield* Effect.exit(Effect.scoped(pool.get("a")))
      assert.isTrue(failedWith(first, "Refused"))
      const stats = yield* pool.stats
      const key = stats.perKey[0]
      assert.strictEqual(stats.failures, 0)
      assert.strictEqual(key?.health.breaker ?? "closed", "closed")
      // No creation backoff either: the next caller's creation asks the gate again at once.
      const second = yield* Effect.exit(Effect.scoped(pool.get("a")))
      assert.isTrue(failedWith(second, "Refused"))
      assert.strictEqual(yield* Ref.get(resources.created), 0)
      assert.strictEqual((yield* pool.stats).creating, 0)
    })
  )

  it.scoped("a waiting gate counts against the limits; the caller's acquireTimeout bounds the caller only", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const open = yield* Deferred.make<void>()
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        gate: () => Deferred.await(open),
        maxPerKey: 1,
        acquireTimeout: "1 second"
      })
      const caller = yield* Effect.fork(Effect.scoped(pool.get("a")))
      yield* settle
      const waiting = yield* pool.stats
      assert.deepStrictEqual([waiting.creating, waiting.awaitingPermit], [1, 1])
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.await(caller)
      assert.isTrue(failedWith(exit, "PoolTimeout"))
      // The creation goes on past the caller's deadline; once permitted, its item becomes idle.
      assert.strictEqual((yield* pool.stats).creating, 1)
      yield* Deferred.succeed(open, undefined)
      yield* settle
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.creating, stats.awaitingPermit, stats.idle], [0, 0, 1])
      assert.strictEqual(yield* Ref.get(resources.created), 1)
    })
  )

  it.scoped("a creation interrupted while it waits for its permit gives its place back once", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const scope = yield* Scope.make()
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        gate: () => Effect.never,
        maxPerKey: 1,
        drainTimeout: "1 second"
      }).pipe(Scope.extend(scope))
      const caller = yield* Effect.fork(Effect.scoped(pool.get("a")))
      yield* settle
      const before = yield* pool.stats
      assert.deepStrictEqual([before.creating, before.awaitingPermit], [1, 1])
      // Closing waits for the creation until drainTimeout, then interrupts it in its wait for a permit.
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      assert.isTrue(failedWith(yield* Fiber.await(caller), "PoolClosed"))
      const after = yield* pool.stats
      assert.deepStrictEqual([after.creating, after.awaitingPermit, after.size], [0, 0, 0])
      assert.strictEqual(yield* Ref.get(resources.created), 0)
    })
  )

  it.scoped("evictIdle in the gate makes room with an idle item of another key, of the same group first", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const permits = yield* makePermits(2)
      const pool = yield* KeyedPool.make({
        acquire: resources.acquire,
        gate: permits.take,
        group: (key: string) => key.slice(0, 1)
      })
      // "b1" is idle longer than "a2": without groups it would go first.
      const b1 = yield* pool.use("b1", Effect.succeed)
      const a2 = yield* pool.use("a2", Effect.succeed)
      yield* pool.use("a1", Effect.succeed)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [a2.id])
      // Another tenant's creation takes the least recently used idle item of another key: "b1" is its own key.
      yield* pool.use("b2", Effect.succeed)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [a2.id, b1.id])
      assert.strictEqual(yield* Ref.get(permits.held), 2)
      // With nothing idle to evict (both leased), the gate refuses.
      const scope = yield* Scope.make()
      yield* pool.get("a1").pipe(Scope.extend(scope))
      yield* pool.get("b2").pipe(Scope.extend(scope))
      assert.isTrue(failedWith(yield* Effect.exit(Effect.scoped(pool.get("c1"))), "Refused"))
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.scoped("evictIdle destroys idle items least recently used first; retireAll retires leased ones on return", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxPerKey: 3 })
      const x = yield* pool.use("x", Effect.succeed)
      const y = yield* pool.use("y", Effect.succeed)
      yield* pool.use("z", Effect.succeed)
      assert.strictEqual(yield* pool.evictIdle(2), 2)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [x.id, y.id])
      assert.strictEqual(yield* pool.evictIdle(5), 1)
      assert.strictEqual(yield* pool.evictIdle(5), 0)
      yield* settle

      const scope = yield* Scope.make()
      const leased = yield* pool.get("a").pipe(Scope.extend(scope))
      const idle = yield* pool.use("b", Effect.succeed)
      assert.strictEqual(yield* pool.retireAll, 2)
      yield* settle
      assert.include(yield* Ref.get(resources.closed), idle.id)
      assert.notInclude(yield* Ref.get(resources.closed), leased.id)
      yield* Scope.close(scope, Exit.void)
      yield* settle
      assert.include(yield* Ref.get(resources.closed), leased.id)
      const fresh = yield* pool.use("a", Effect.succeed)
      assert.notStrictEqual(fresh.id, leased.id)
      assert.strictEqual(yield* Ref.get(resources.alive), 1)
    })
  )

  it.scoped("shared leases: a retired item takes no new lease and closes with its last one", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({ acquire: resources.acquire, maxLeasesPerItem: 4 })
      const scope = yield* Scope.make()
      const shared = yield* pool.get("a").pipe(Scope.extend(scope))
      assert.strictEqual(yield* pool.retireAll, 1)
      const next = yield* pool.use("a", Effect.succeed)
      assert.notStrictEqual(next.id, shared.id)
      yield* Scope.close(scope, Exit.void)
      yield* settle
      assert.deepStrictEqual(yield* Ref.get(resources.closed), [shared.id])
    })
  )
})

describe("Pool gate", () => {
  it.scoped("a single pool takes the same gate", () =>
    Effect.gen(function* () {
      const resources = yield* makeResources
      const permits = yield* makePermits(1)
      const pool = yield* Pool.make({
        acquire: resources.acquire("db"),
        gate: (context) => permits.take({ ...context, key: "db" }),
        max: 2
      })
      const scope = yield* Scope.make()
      yield* pool.get.pipe(Scope.extend(scope))
      // The one permit is held by a leased item: nothing idle to evict, so the second creation is refused.
      assert.isTrue(failedWith(yield* Effect.exit(Effect.scoped(pool.get)), "Refused"))
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* pool.retireAll, 1)
      yield* settle
      assert.strictEqual(yield* Ref.get(permits.held), 0)
      yield* Effect.scoped(pool.get)
      assert.strictEqual(yield* Ref.get(permits.held), 1)
    })
  )
})
