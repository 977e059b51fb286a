/**
 * The budget service against a real `redis-server`, several instances (each
 * with its own client) in one process. The test build of the script reads
 * the time from the Effect `Clock`, so leases, heartbeats, retries and
 * timeouts all run on `TestClock`; only Redis I/O is real (waited for by
 * polling, bounded).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as ClusterBudget from "../src/ClusterBudget.js"
import * as internal from "../src/internal/budget.js"
import * as BudgetClient from "../src/internal/budgetClient.js"
import * as RedisClient from "../src/RedisClient.js"
import { counted, makeInstance, tickUntil } from "./budget/instances.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

const options = (name: string, over: Partial<ClusterBudget.Options> = {}): ClusterBudget.Options => ({
  name,
  total: 3,
  perTenant: 2,
  leaseTime: "3 seconds",
  acquireTimeout: "10 seconds",
  ...over
})

/** Takes a permit in a scope of its own; closing that scope returns it. */
const hold = (budget: ClusterBudget.Service, tenant: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const permit = yield* Scope.extend(budget.permit(tenant), scope)
    return { permit, close: Scope.close(scope, Exit.void) }
  })

const stat = <K extends keyof ClusterBudget.Stats>(budget: ClusterBudget.Service, key: K) =>
  Effect.map(budget.stats, (s) => s[key])

const available = redisAvailable()

describe.skipIf(!available.run)("ClusterBudget", () => {
  it.scoped("grants at most the total across instances and per tenant; a release elsewhere wakes a waiter", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const a = yield* makeInstance(server.url, options("b1", { instanceId: "a" }))
      const b = yield* makeInstance(server.url, options("b1", { instanceId: "b" }))
      const a1 = yield* hold(a, "t1")
      yield* hold(a, "t1")
      // t1 is at its tenant limit (2): b's permit for t1 waits, one for t2 is granted (total 3).
      const waiting = yield* Effect.fork(hold(b, "t1"))
      yield* eventually(
        Effect.map(stat(b, "waiters"), (n) => n === 1),
        "b waits for t1"
      )
      yield* hold(b, "t2")
      assert.strictEqual((yield* counted(raw, "b1")).total, 3)
      // No clock moves: only the release notification can wake b at once.
      yield* a1.close
      const got = yield* Fiber.join(waiting)
      assert.strictEqual(got.permit.tenant, "t1")
      const after = yield* counted(raw, "b1")
      assert.deepStrictEqual(after.fields, { "*": "3", "t:t1": "2", "t:t2": "1", "i:a": "1", "i:b": "2" })
      assert.strictEqual(after.permits, 3)
      const s = yield* b.stats
      assert.strictEqual(s.held, 2)
      assert.strictEqual(s.granted, 2)
      const granted = yield* Metric.value(
        Metric.tagged(Metric.tagged(ClusterBudget.acquireTotal, "budget", "b1"), "result", "granted")
      )
      assert.strictEqual(granted.count, 4, "a's two and b's two")
      const used = yield* Metric.value(Metric.tagged(ClusterBudget.usedGauge, "budget", "b1"))
      assert.strictEqual(used.value, 3)
    })
  )

  it.scoped("a waiter fails with BudgetExhausted after acquireTimeout, with the figures; its id is released", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("b2", { total: 1, acquireTimeout: "2 seconds" }))
      yield* hold(a, "t1")
      const waiting = yield* Effect.fork(Effect.scoped(a.permit("t2")))
      yield* eventually(
        Effect.map(stat(a, "waiters"), (n) => n === 1),
        "a waits"
      )
      yield* TestClock.adjust("2 seconds")
      const exit = yield* Fiber.await(waiting)
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        assert.strictEqual(error?._tag, "BudgetExhausted")
        if (error?._tag === "BudgetExhausted") {
          assert.include(
            { used: error.used, limit: error.limit, tenantUsed: error.tenantUsed, reason: error.reason },
            { used: 1, limit: 1, tenantUsed: 0, reason: "full" }
          )
          assert.strictEqual(error.tenant, "t2")
        }
      }
      const s = yield* a.stats
      assert.include(s, { held: 1, waiters: 0, exhausted: 1 })
    })
  )

  it.scoped("waiters of one tenant are served first come, first served", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("b3", { total: 1 }))
      const first = yield* hold(a, "t")
      const order: Array<number> = []
      const fibers = []
      for (const n of [1, 2, 3]) {
        fibers.push(yield* Effect.fork(Effect.tap(hold(a, "t"), () => Effect.sync(() => order.push(n)))))
        yield* eventually(
          Effect.map(stat(a, "waiters"), (w) => w === n),
          `waiter ${n} queued`
        )
      }
      let current = first
      for (let i = 0; i < 3; i++) {
        yield* current.close
        current = yield* Fiber.join(fibers[i]!)
      }
      assert.deepStrictEqual(order, [1, 2, 3])
    })
  )

  it.scoped("the permits of an instance that stopped renewing come back after its lease", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const b = yield* makeInstance(server.url, options("b4", { instanceId: "b", total: 2, perTenant: 2 }))
      // "a" takes both permits and dies: it never calls again (no heartbeat, no leave).
      const ghost = BudgetClient.make(yield* RedisClient.make({ url: server.url }), {
        prefix: "cistern:budget:",
        name: "b4",
        testClock: true
      })
      const caller = { instance: "a", epoch: "", leaseMillis: 3_000 }
      for (const id of ["a:1", "a:2"]) {
        const now = yield* Clock.currentTimeMillis
        const reply = yield* ghost.call(
          caller,
          { _tag: "acquire", id, tenant: "t", limit: 2, tenantLimit: 2, held: 0, waiting: 1 },
          now
        )
        assert.strictEqual(reply.status, "granted")
      }
      const waiting = yield* Effect.fork(hold(b, "t"))
      yield* eventually(
        Effect.map(stat(b, "waiters"), (n) => n === 1),
        "b waits"
      )
      assert.strictEqual((yield* counted(raw, "b4")).total, 2, "a's permits are still counted")
      // Time passes in steps (b keeps beating); after a's lease, b's next try reclaims them.
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust("1 second")
        yield* Effect.yieldNow()
      }
      const got = yield* Fiber.join(waiting)
      assert.strictEqual(got.permit.tenant, "t")
      const s = yield* b.stats
      assert.strictEqual(s.reclaimed, 2)
      assert.strictEqual((yield* counted(raw, "b4")).total, 1)
    })
  )

  it.scoped("an instance whose permits were reclaimed while it was silent hears lost from its heartbeat", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const a = yield* makeInstance(server.url, options("b5", { instanceId: "a" }))
      const b = yield* makeInstance(server.url, options("b5", { instanceId: "b" }))
      const events = yield* Effect.fork(Stream.runCollect(Stream.take(a.lost, 1)))
      yield* Effect.yieldNow()
      yield* hold(a, "t1")
      yield* hold(a, "t1")
      // As if a had been paused past its lease: its entry has expired (and nothing else changed).
      const now = yield* Clock.currentTimeMillis
      yield* Effect.promise(() => raw.zadd(BudgetClient.budgetKeys("cistern:budget:", "b5").keys[1]!, now - 1, "a"))
      // b's next call reclaims a's permits...
      yield* hold(b, "t1")
      assert.strictEqual((yield* b.stats).reclaimed, 2)
      // ...and a's next heartbeat is told so: it gives them up and signals.
      yield* tickUntil(
        Effect.map(stat(a, "leasesLost"), (n) => n === 1),
        "a sees lost"
      )
      const [event] = Chunk.toReadonlyArray(yield* Fiber.join(events))
      assert.deepStrictEqual(event, { budget: "b5", instanceId: "a", permits: 2, detectedBy: "heartbeat" })
      assert.strictEqual((yield* a.stats).held, 0)
      // a takes permits afresh: the budget counts b's one and a's new one.
      yield* hold(a, "t2")
      assert.strictEqual((yield* counted(raw, "b5")).total, 2)
    })
  )

  it.scoped(
    "when Redis hangs past the local deadline the instance signals lost; the releases of its retired connections land after",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const raw = yield* rawClient(server.url)
        const a = yield* makeInstance(server.url, options("b6", { instanceId: "a" }))
        const first = yield* hold(a, "t1")
        const second = yield* hold(a, "t1")
        server.signal("SIGSTOP")
        // lease 3 s, margin 750 ms: lost at 2.25 s without a renewal, before any other instance could reclaim.
        yield* tickUntil(
          Effect.map(stat(a, "leasesLost"), (n) => n === 1),
          "a gives up",
          { maxSteps: 14 }
        )
        assert.include(yield* a.stats, { held: 0, pendingReleases: 0 })
        // The owner retires the connections; their releases wait for Redis.
        yield* first.close
        yield* second.close
        assert.include(yield* a.stats, { pendingReleases: 2 })
        // A permit now fails closed (Redis does not answer within the command timeout).
        const failed = yield* Effect.flip(Effect.scoped(a.permit("t1")))
        assert.strictEqual(failed._tag, "BudgetUnavailable")
        server.signal("SIGCONT")
        // Back: the heartbeat replays the releases; Redis had kept the permits (it learned it was paused).
        yield* tickUntil(
          Effect.map(counted(raw, "b6"), (c) => c.total === 0),
          "the permits given up are released in Redis"
        )
        assert.include(yield* a.stats, { pendingReleases: 0, state: "ok" })
      })
  )

  it.scoped("after Redis loses its data, holders re-assert before anything new is granted: never above the total", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const a = yield* makeInstance(server.url, options("b7", { instanceId: "a", perTenant: 3 }))
      const b = yield* makeInstance(server.url, options("b7", { instanceId: "b", perTenant: 3 }))
      yield* hold(a, "t1")
      yield* hold(a, "t1")
      yield* tickUntil(
        Effect.map(stat(b, "used"), (n) => n === 2),
        "b has heard of the epoch"
      )
      yield* Effect.promise(() => raw.flushall())
      let worst = 0
      let learned = false
      const sample = Effect.zipWith(counted(raw, "b7"), stat(b, "state"), (c, state) => {
        worst = Math.max(worst, c.total)
        learned ||= state === "learning"
      })
      const waiting = yield* Effect.fork(Effect.all([hold(b, "t2"), hold(b, "t2")]))
      yield* tickUntil(
        Effect.zipWith(sample, stat(b, "held"), (_, held) => held === 1),
        "b gets the third permit after learning"
      )
      assert.strictEqual((yield* counted(raw, "b7")).total, 3)
      assert.strictEqual(worst, 3)
      assert.isTrue(learned, "b was told to wait while Redis re-learned")
      assert.strictEqual((yield* b.stats).waiters, 1, "the fourth waits")
      yield* Fiber.interrupt(waiting)
    })
  )

  it.scoped(
    "after Redis restarts empty, a holder whose acquire reaches it before its heartbeat keeps its permits and re-asserts them",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        // The instance's own client, so the test can wait for it to reconnect without moving the clock.
        const client = yield* RedisClient.make({
          url: server.url,
          commandTimeout: "300 millis",
          reconnectMax: "50 millis"
        })
        const a = yield* internal
          .make(options("b12", { instanceId: "a", perTenant: 3 }), { testClock: true })
          .pipe(Effect.provideService(RedisClient.RedisClient, client))
        const events = yield* Effect.fork(Stream.runCollect(Stream.take(a.lost, 1)))
        yield* hold(a, "t1")
        yield* hold(a, "t1")
        server.signal("SIGKILL")
        yield* Effect.asVoid(server.exited)
        const restarted = yield* RedisServer.make({ port: server.port })
        const raw = yield* rawClient(restarted.url)
        yield* eventually(client.isReady, "a's client reconnects")
        // A new epoch is named after the server's time: a few ms on (less than any timer), so it differs.
        yield* TestClock.adjust("10 millis")
        // No heartbeat is due (the clock moves no further), so the first call the empty Redis sees is this acquire
        // (held 2, no lease entry, an older epoch). It hears learning, and a re-asserts at once.
        const waiting = yield* Effect.fork(hold(a, "t2"))
        yield* eventually(
          Effect.zipWith(counted(raw, "b12"), a.stats, (c, s) => c.total === 2 && s.held === 2),
          "a re-asserts its two permits"
        )
        assert.include(
          yield* a.stats,
          { leasesLost: 0, held: 2, waiters: 1 },
          "the waiter waits out the learning period"
        )
        // Past the learning period (a lease from the restart) the waiter gets the third permit.
        yield* tickUntil(
          Effect.map(stat(a, "held"), (n) => n === 3),
          "a's waiter is granted after learning"
        )
        yield* Fiber.join(waiting)
        assert.deepStrictEqual((yield* counted(raw, "b12")).fields, { "*": "3", "t:t1": "2", "t:t2": "1", "i:a": "3" })
        assert.strictEqual((yield* a.stats).leasesLost, 0, "a never heard lost")
        assert.isTrue(Option.isNone(yield* Fiber.poll(events)), "no lost event")
        yield* Fiber.interrupt(events)
      })
  )

  it.scoped("an acquire whose reply never came (Redis paused) is released once Redis runs it: nothing leaks", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const a = yield* makeInstance(server.url, options("b9", { instanceId: "a" }))
      yield* tickUntil(
        Effect.map(stat(a, "state"), (s) => s === "ok"),
        "a has registered"
      )
      server.signal("SIGSTOP")
      // The acquire is sent, Redis will run it after SIGCONT, but the caller gives up at the command timeout.
      const failed = yield* Effect.flip(Effect.scoped(a.permit("t1")))
      assert.strictEqual(failed._tag, "BudgetUnavailable")
      assert.include(yield* a.stats, { held: 0, pendingReleases: 1 })
      server.signal("SIGCONT")
      // Same connection, same order: the late acquire grants, the replayed release (same id) takes it back.
      yield* tickUntil(
        Effect.zipWith(
          counted(raw, "b9"),
          a.stats,
          (c, s) => c.total === 0 && c.permits === 0 && s.pendingReleases === 0
        ),
        "the late grant is released"
      )
      yield* hold(a, "t1")
      assert.deepStrictEqual((yield* counted(raw, "b9")).fields, { "*": "1", "t:t1": "1", "i:a": "1" })
    })
  )

  it.scoped("an instance on all permits while another waits hears how far it is above its fair share", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("b10", { instanceId: "a", total: 4, perTenant: 4 }))
      const b = yield* makeInstance(server.url, options("b10", { instanceId: "b", total: 4, perTenant: 4 }))
      const first = yield* hold(a, "t")
      for (let i = 0; i < 3; i++) yield* hold(a, "t")
      assert.strictEqual((yield* a.stats).over, 0, "nobody waits")
      const waiting = yield* Effect.fork(hold(b, "t"))
      yield* eventually(
        Effect.map(stat(b, "waiters"), (n) => n === 1),
        "b waits"
      )
      // Two instances with demand: a fair share is 2, a holds 4. Its next heartbeat says so.
      yield* tickUntil(
        Effect.map(stat(a, "over"), (n) => n === 2),
        "a hears it is 2 over"
      )
      assert.strictEqual((yield* a.stats).wantsElsewhere, 1)
      // a closes one: it is one above at once, before its next heartbeat says so.
      yield* first.close
      assert.strictEqual((yield* a.stats).over, 1)
      yield* Fiber.interrupt(waiting)
    })
  )

  it.scoped("layerConfig reads the budget's settings; a bad value names its variable", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const provider = (entries: ReadonlyArray<readonly [string, string]>) =>
        Layer.setConfigProvider(ConfigProvider.fromMap(new Map(entries)))
      const live = ClusterBudget.layerConfig(ClusterBudget.config("b11", "UPSTREAM_")).pipe(
        Layer.provide(RedisClient.layer({ url: server.url })),
        Layer.provide(
          provider([
            ["UPSTREAM_TOTAL", "2"],
            ["UPSTREAM_PER_TENANT", "1"],
            ["UPSTREAM_LEASE_TIME", "5 seconds"]
          ])
        )
      )
      const stats = yield* Effect.gen(function* () {
        const budget = yield* ClusterBudget.ClusterBudget
        yield* budget.permit("t")
        return yield* budget.stats
      }).pipe(Effect.scoped, Effect.provide(live))
      assert.include(stats, { name: "b11", limit: 2, held: 1 })
      const bad = yield* Effect.flip(
        Effect.scoped(
          Layer.build(
            ClusterBudget.layerConfig(ClusterBudget.config("b11", "UPSTREAM_")).pipe(
              Layer.provide(RedisClient.layer({ url: server.url })),
              Layer.provide(provider([["UPSTREAM_TOTAL", "0"]]))
            )
          )
        )
      )
      assert.include(String(bad), "UPSTREAM_TOTAL")
    })
  )

  it.scoped("fails closed when Redis is gone: BudgetUnavailable at once, held permits kept", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("b8", { instanceId: "a" }))
      yield* hold(a, "t1")
      server.signal("SIGKILL")
      yield* Effect.asVoid(server.exited)
      const failed = yield* Effect.flip(Effect.scoped(a.permit("t1")))
      assert.strictEqual(failed._tag, "BudgetUnavailable")
      // The refused acquire was never written (no connection, no offline queue): no release to replay for it.
      assert.include(yield* a.stats, { held: 1, unavailable: 1, state: "unavailable", pendingReleases: 0 })
    })
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
