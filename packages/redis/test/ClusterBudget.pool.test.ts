/**
 * A pool under a cluster budget, against a real `redis-server`: the gate
 * takes a permit per connection and makes room with the pool's own idle
 * connections when the budget is full; `govern` retires the pool's
 * connections when the lease is lost and closes idle ones above the fair
 * share. Time runs on `TestClock` (the test build of the script reads it).
 */

import { KeyedPool } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as ClusterBudget from "../src/ClusterBudget.js"
import * as BudgetClient from "../src/internal/budgetClient.js"
import { counted, makeInstance, tickUntil } from "./budget/instances.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

interface Conn {
  readonly key: string
  readonly id: number
}

/** Connections counted as they open and close: the ground truth of what is live. */
const makeConnections = Effect.gen(function* () {
  const live = yield* Ref.make(0)
  let next = 0
  const acquire = (key: string) =>
    Effect.acquireRelease(
      Effect.as(
        Ref.update(live, (n) => n + 1),
        { key, id: ++next } satisfies Conn
      ),
      () => Ref.update(live, (n) => n - 1)
    )
  return { live, acquire }
})

const options = (name: string, over: Partial<ClusterBudget.Options> = {}): ClusterBudget.Options => ({
  name,
  total: 2,
  leaseTime: "3 seconds",
  acquireTimeout: "10 seconds",
  ...over
})

const available = redisAvailable()

describe.skipIf(!available.run)("a pool under a ClusterBudget", () => {
  it.scoped(
    "takes a permit per connection, none per lease; a full budget closes an idle connection of another key",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const raw = yield* rawClient(server.url)
        const budget = yield* makeInstance(server.url, options("p1", { instanceId: "a" }))
        const connections = yield* makeConnections
        const pool = yield* KeyedPool.make({
          acquire: connections.acquire,
          gate: ClusterBudget.gate(budget),
          describeKey: (key) => key
        })
        const x = yield* pool.use("x", Effect.succeed)
        yield* pool.use("x", Effect.succeed)
        yield* pool.use("y", Effect.succeed)
        assert.strictEqual((yield* budget.stats).granted, 2, "a lease of an idle connection asks nothing")
        // Full: the pool's least recently used idle connection of another key ("x") goes, "z" takes its permit.
        const z = yield* pool.use("z", Effect.succeed)
        assert.strictEqual(z.key, "z")
        yield* eventually(
          Effect.map(Ref.get(connections.live), (n) => n === 2),
          "x closed"
        )
        assert.deepStrictEqual(
          (yield* pool.items).map((item) => item.key),
          ["y", "z"]
        )
        assert.strictEqual((yield* counted(raw, "p1")).total, 2)
        assert.notStrictEqual(x.key, z.key)
      })
  )

  it.scoped("maps the pool's groups to tenants, and a full tenant makes room with its own idle connection", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const budget = yield* makeInstance(server.url, options("p2", { instanceId: "a", total: 3, perTenant: 1 }))
      const connections = yield* makeConnections
      const pool = yield* KeyedPool.make({
        acquire: connections.acquire,
        group: (key: string) => key.split(":")[0]!,
        gate: ClusterBudget.gate(budget),
        describeKey: (key) => key
      })
      yield* pool.use("ada:search", Effect.succeed)
      yield* pool.use("bob:search", Effect.succeed)
      // ada is at her tenant limit: her own idle connection goes (bob's, older, stays).
      yield* pool.use("ada:mail", Effect.succeed)
      yield* eventually(
        Effect.map(Ref.get(connections.live), (n) => n === 2),
        "ada:search closed"
      )
      assert.deepStrictEqual((yield* pool.items).map((item) => item.key).sort(), ["ada:mail", "bob:search"])
      const used = (yield* counted(raw, "p2")).fields
      assert.deepStrictEqual([used["t:ada"], used["t:bob"]], ["1", "1"])
    })
  )

  it.scoped("a full budget with nothing idle fails the caller with BudgetExhausted, no connection failure", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const budget = yield* makeInstance(
        server.url,
        options("p3", { instanceId: "a", total: 1, acquireTimeout: "1 second" })
      )
      const connections = yield* makeConnections
      const pool = yield* KeyedPool.make({
        acquire: connections.acquire,
        gate: ClusterBudget.gate(budget),
        breaker: { failures: 1, reset: "1 minute" }
      })
      const scope = yield* Scope.make()
      yield* pool.get("x").pipe(Scope.extend(scope))
      const refused = yield* Effect.fork(Effect.exit(Effect.scoped(pool.get("y"))))
      yield* tickUntil(
        Effect.map(Fiber.poll(refused), (exit) => exit._tag === "Some"),
        "y refused"
      )
      const exit = yield* Fiber.join(refused)
      assert.isTrue(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "BudgetExhausted")
      const stats = yield* pool.stats
      assert.strictEqual(stats.failures, 0)
      assert.isTrue(
        stats.perKey.every((key) => key.health.breaker === "closed"),
        "no circuit opened"
      )
      yield* Scope.close(scope, Exit.void)
    })
  )

  it.scoped("govern retires the pool's connections when the lease is lost: idle at once, in-use when returned", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const a = yield* makeInstance(server.url, options("p4", { instanceId: "a", total: 3 }))
      const b = yield* makeInstance(server.url, options("p4", { instanceId: "b", total: 3 }))
      const connections = yield* makeConnections
      const pool = yield* KeyedPool.make({ acquire: connections.acquire, gate: ClusterBudget.gate(a) })
      yield* ClusterBudget.govern(a, pool)
      const lease = yield* Scope.make()
      const leased = yield* pool.get("x").pipe(Scope.extend(lease))
      yield* pool.use("y", Effect.succeed)
      // As if a had been paused past its lease: b's next call reclaims a's permits, a's heartbeat hears it.
      const now = yield* Clock.currentTimeMillis
      yield* Effect.promise(() => raw.zadd(BudgetClient.budgetKeys("cistern:budget:", "p4").keys[1]!, now - 1, "a"))
      yield* Scope.extend(b.permit("t"), yield* Effect.scope)
      yield* tickUntil(
        Effect.map(Ref.get(connections.live), (n) => n === 1),
        "the idle connection retired"
      )
      assert.strictEqual((yield* a.stats).leasesLost, 1)
      // The in-use one finishes its lease, then goes; a new caller gets a new connection under a new permit.
      yield* Scope.close(lease, Exit.void)
      yield* eventually(
        Effect.map(Ref.get(connections.live), (n) => n === 0),
        "the in-use connection retired on return"
      )
      const fresh = yield* pool.use("x", Effect.succeed)
      assert.notStrictEqual(fresh.id, leased.id)
      assert.strictEqual((yield* counted(raw, "p4")).total, 2)
    })
  )

  it.scoped("govern closes idle connections above the fair share while another instance waits", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("p5", { instanceId: "a", total: 4 }))
      const b = yield* makeInstance(server.url, options("p5", { instanceId: "b", total: 4 }))
      const connections = yield* makeConnections
      const pool = yield* KeyedPool.make({ acquire: connections.acquire, gate: ClusterBudget.gate(a) })
      yield* ClusterBudget.govern(a, pool)
      for (const key of ["k1", "k2", "k3", "k4"]) yield* pool.use(key, Effect.succeed)
      assert.strictEqual(yield* Ref.get(connections.live), 4)
      const waiting = yield* Effect.fork(Scope.extend(b.permit("t"), yield* Effect.scope))
      // a's fair share with b waiting is 2: it closes two idle connections, and b is granted one.
      yield* tickUntil(
        Effect.map(Fiber.poll(waiting), (exit) => exit._tag === "Some"),
        "b granted"
      )
      assert.strictEqual((yield* Fiber.join(waiting)).tenant, "t")
      assert.isAtMost(yield* Ref.get(connections.live), 3)
      assert.isAtLeast(yield* Ref.get(connections.live), 2, "never below the fair share")
    })
  )
})
