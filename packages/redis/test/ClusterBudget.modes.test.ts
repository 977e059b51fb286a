/**
 * What a budget does when Redis cannot be asked (`mode`: fail-closed,
 * local-share, unlimited), how the permits granted without it are counted
 * there once it is back, and the `onFull` hook of `permit`. Real
 * `redis-server`s (killed and restarted empty on the same port); the test
 * build of the script reads the time from the Effect `Clock`, so leases,
 * retries and timeouts run on `TestClock`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ClusterBudget from "../src/ClusterBudget.js"
import { counted, makeInstance, tickUntil } from "./budget/instances.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

const options = (name: string, over: Partial<ClusterBudget.Options> = {}): ClusterBudget.Options => ({
  name,
  total: 4,
  leaseTime: "30 seconds",
  acquireTimeout: "2 seconds",
  ...over
})

/** Takes a permit in a scope of its own; closing that scope returns it. */
const hold = (budget: ClusterBudget.Service, tenant: string, permitOptions?: ClusterBudget.PermitOptions) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const permit = yield* Scope.extend(budget.permit(tenant, permitOptions), scope)
    return { permit, close: Scope.close(scope, Exit.void) }
  })

const stat = <K extends keyof ClusterBudget.Stats>(budget: ClusterBudget.Service, key: K) =>
  Effect.map(budget.stats, (s) => s[key])

/** Kills the server and waits until it is gone. */
const kill = (server: RedisServer.RedisServer) =>
  Effect.suspend(() => {
    server.signal("SIGKILL")
    return Effect.asVoid(server.exited)
  })

const failOpen = (name: string, mode: ClusterBudget.Mode) =>
  Effect.map(
    Metric.value(Metric.tagged(Metric.tagged(ClusterBudget.failOpenTotal, "budget", name), "mode", mode)),
    (v) => v.count
  )

/** The failure of an exit (the test fails if it succeeded). */
const failure = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) return assert.fail("expected a failure")
  return Option.getOrElse(Cause.failureOption(exit.cause), () => assert.fail(Cause.pretty(exit.cause)))
}

/** Moves the clock until the fiber is done (its retries do real I/O at each step). */
const settle = <A, E>(fiber: Fiber.Fiber<A, E>, what: string) =>
  Effect.zipRight(
    tickUntil(Effect.map(Fiber.poll(fiber), Option.isSome), what, { step: "500 millis", maxSteps: 20 }),
    Fiber.await(fiber)
  )

/** An instance whose Redis is gone: its client waits for a connection up to its connect timeout (5 s, on the clock). */
const offlineInstance = (url: string, budgetOptions: ClusterBudget.Options) =>
  Effect.gen(function* () {
    const starting = yield* Effect.fork(makeInstance(url, budgetOptions))
    return yield* Fiber.join(starting).pipe(
      Effect.zipLeft(tickUntil(Effect.map(Fiber.poll(starting), Option.isSome), "started", { step: "1 second" }), {
        concurrent: true
      })
    )
  })

const available = redisAvailable()

describe.skipIf(!available.run)("ClusterBudget modes and onFull", () => {
  it.scoped(
    "local-share: without Redis, grants up to ceil(total ÷ instances); counted again once Redis is back (restarted empty)",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const b = yield* makeInstance(server.url, options("m1", { instanceId: "b", mode: "local-share" }))
        yield* eventually(
          Effect.map(stat(b, "instances"), (n) => n === 1),
          "b has registered"
        )
        const a = yield* makeInstance(server.url, options("m1", { instanceId: "a", mode: "local-share" }))
        yield* hold(a, "t")
        assert.include(yield* a.stats, { instances: 2, held: 1, offline: 0, mode: "local-share" })
        yield* kill(server)
        // Two instances seen: a's share is ceil(4 ÷ 2) = 2. It holds one counted permit: one more without Redis.
        const second = yield* hold(a, "t")
        assert.include(yield* a.stats, { held: 2, offline: 1, failOpen: 1, granted: 2, state: "unavailable" })
        assert.strictEqual(yield* failOpen("m1", "local-share"), 1)
        const state = yield* Metric.value(Metric.tagged(ClusterBudget.stateGauge, "budget", "m1"))
        assert.strictEqual(state.value, 2, "unavailable")
        // The third waits for one of a's permits (or Redis) and fails after acquireTimeout.
        const third = yield* Effect.fork(hold(a, "t"))
        const error = failure(yield* settle(third, "the third permit gives up"))
        assert.strictEqual(error._tag, "BudgetUnavailable")
        assert.include(error.message, "the local share (2) is in use")
        assert.include(yield* a.stats, { held: 2, offline: 1, unavailable: 1, waiters: 0 })
        // Redis comes back empty on the same port: a re-asserts its counted permit and counts the other.
        const restarted = yield* RedisServer.make({ port: server.port })
        const raw = yield* rawClient(restarted.url)
        yield* tickUntil(
          Effect.zipWith(counted(raw, "m1"), a.stats, (c, s) => c.total === 2 && s.offline === 0),
          "a's permits are counted in Redis again",
          { step: "1 second" }
        )
        assert.include(yield* a.stats, { held: 2, offline: 0, reasserted: 1, over: 0 })
        assert.deepStrictEqual((yield* counted(raw, "m1")).fields, { "*": "2", "t:t": "2", "i:a": "2" })
        // A permit granted without Redis is released like any other.
        yield* second.close
        assert.strictEqual((yield* counted(raw, "m1")).total, 1)
        assert.include(yield* a.stats, { held: 1, offline: 0 })
      })
  )

  it.scoped("a permit granted without Redis whose acquire ran late (Redis paused) is counted once, not twice", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const raw = yield* rawClient(server.url)
      const a = yield* makeInstance(server.url, options("m9", { instanceId: "a", mode: "local-share", localShare: 2 }))
      yield* eventually(
        Effect.map(stat(a, "instances"), (n) => n === 1),
        "a has registered"
      )
      server.signal("SIGSTOP")
      // The acquire is written, times out (300 ms), and the permit is granted locally.
      const p = yield* hold(a, "t")
      assert.include(yield* a.stats, { held: 1, offline: 1, failOpen: 1 })
      server.signal("SIGCONT")
      // Redis runs the late acquire (granting the same id); the re-assertion finds it and adds nothing.
      yield* tickUntil(
        Effect.map(stat(a, "offline"), (n) => n === 0),
        "the permit is counted in Redis",
        { step: "1 second" }
      )
      const c = yield* counted(raw, "m9")
      assert.deepStrictEqual(c.fields, { "*": "1", "t:t": "1", "i:a": "1" })
      assert.strictEqual(c.permits, 1)
      yield* p.close
      assert.strictEqual((yield* counted(raw, "m9")).total, 0)
    })
  )

  it.scoped(
    "unlimited: grants without Redis past the total; re-asserted above the limit, they are kept and reported as over",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const a = yield* makeInstance(server.url, options("m2", { instanceId: "a", total: 2, mode: "unlimited" }))
        yield* hold(a, "t")
        yield* hold(a, "t")
        yield* kill(server)
        const extra = []
        for (let i = 0; i < 3; i++) extra.push(yield* hold(a, "t"))
        assert.include(yield* a.stats, { held: 5, offline: 3, failOpen: 3 })
        assert.strictEqual(yield* failOpen("m2", "unlimited"), 3)
        const restarted = yield* RedisServer.make({ port: server.port })
        const raw = yield* rawClient(restarted.url)
        yield* tickUntil(
          Effect.map(stat(a, "offline"), (n) => n === 0),
          "the permits granted without Redis are counted",
          { step: "1 second" }
        )
        // Redis counts every live connection, 3 above the limit: all 3 are a's doing.
        assert.strictEqual((yield* counted(raw, "m2")).total, 5)
        assert.include(yield* a.stats, { used: 5, over: 3, reasserted: 3 })
        // One closes: over shrinks at once (a pool acting on it closes no more than the excess)...
        yield* extra[0]!.close
        assert.strictEqual((yield* a.stats).over, 2)
        // ...and the next heartbeat agrees.
        yield* tickUntil(
          Effect.map(counted(raw, "m2"), (c) => c.total === 4),
          "the release lands"
        )
        let steps = 0
        yield* tickUntil(
          Effect.sync(() => steps++ === 12),
          "a heartbeat or two",
          { step: "1 second" }
        )
        assert.strictEqual((yield* a.stats).over, 2)
        assert.strictEqual((yield* counted(raw, "m2")).total, 4)
        // Nothing new is granted through Redis while it counts more than the limit.
        const waiting = yield* Effect.fork(hold(a, "t"))
        assert.strictEqual(failure(yield* settle(waiting, "the permit gives up"))._tag, "BudgetExhausted")
      })
  )

  it.scoped(
    "local-share before any answer: nothing without an explicit share; with one, the total and the tenant's share hold",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        yield* kill(server)
        const unknown = yield* offlineInstance(server.url, options("m3", { instanceId: "u", mode: "local-share" }))
        const refused = yield* Effect.flip(Effect.scoped(unknown.permit("t1")))
        assert.strictEqual(refused._tag, "BudgetUnavailable")
        assert.include(refused.message, "no local share known yet")
        assert.include(yield* unknown.stats, { failOpen: 0, unavailable: 1 })

        const a = yield* offlineInstance(
          server.url,
          options("m3", { instanceId: "a", mode: "local-share", localShare: 2, localTenantShare: 1 })
        )
        const first = yield* hold(a, "t1")
        // t1 is at its local share (1) while the total share (2) has room: a second t1 permit waits, then gives up.
        const blocked = yield* Effect.fork(hold(a, "t1"))
        assert.include(
          failure(yield* settle(blocked, "t1's second permit gives up")).message,
          "tenant's local share (1)"
        )
        yield* hold(a, "t2")
        // With the share in use, onFull closes one of a's connections: its release lets the waiter in.
        let runs = 0
        const onFull = Effect.sync(() => runs++).pipe(Effect.zipRight(Effect.forkDaemon(first.close)), Effect.as(true))
        const got = yield* hold(a, "t3", { onFull })
        assert.strictEqual(got.permit.tenant, "t3")
        assert.strictEqual(runs, 1)
        // The closed one's acquires were never written (no connection): its release needs no replay.
        assert.include(yield* a.stats, { held: 2, offline: 2, failOpen: 3, pendingReleases: 0 })
      })
  )

  it.scoped(
    "local-share past the local deadline: the counted permits are given up (lost); the local share remains for new ones",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const a = yield* makeInstance(
          server.url,
          options("m4", { instanceId: "a", mode: "local-share", localShare: 2, leaseTime: "3 seconds" })
        )
        const events = yield* Effect.fork(Stream.runCollect(Stream.take(a.lost, 1)))
        yield* Effect.yieldNow()
        yield* hold(a, "t")
        yield* kill(server)
        yield* hold(a, "t")
        assert.include(yield* a.stats, { held: 2, offline: 1 })
        // lease 3 s, margin 750 ms: the counted permit is given up after 2.25 s without a renewal.
        yield* tickUntil(
          Effect.map(stat(a, "leasesLost"), (n) => n === 1),
          "a gives up its counted permit",
          { maxSteps: 14 }
        )
        const [event] = Chunk.toReadonlyArray(yield* Fiber.join(events))
        assert.include(event, { permits: 1, detectedBy: "deadline" })
        assert.include(yield* a.stats, { held: 1, offline: 1 })
        yield* hold(a, "t")
        assert.include(yield* a.stats, { held: 2, offline: 2, failOpen: 2 })
      })
  )

  it.scoped("unlimited past the local deadline: no lost event, the connections are kept and counted again", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(
        server.url,
        options("m8", { instanceId: "a", total: 2, mode: "unlimited", leaseTime: "3 seconds" })
      )
      const events = yield* Effect.fork(Stream.runCollect(Stream.take(a.lost, 1)))
      yield* Effect.yieldNow()
      yield* hold(a, "t")
      yield* hold(a, "t")
      yield* kill(server)
      yield* tickUntil(
        Effect.map(stat(a, "leasesLost"), (n) => n === 1),
        "a's local deadline passes",
        { maxSteps: 14 }
      )
      assert.include(yield* a.stats, { held: 2, offline: 2, failOpen: 0 })
      assert.isTrue(Option.isNone(yield* Fiber.poll(events)), "no lost event in unlimited mode")
      const restarted = yield* RedisServer.make({ port: server.port })
      const raw = yield* rawClient(restarted.url)
      yield* tickUntil(
        Effect.zipWith(counted(raw, "m8"), a.stats, (c, s) => c.total === 2 && s.offline === 0),
        "the kept permits are counted again",
        { step: "500 millis" }
      )
      assert.include(yield* a.stats, { held: 2, reasserted: 2, over: 0 })
      yield* Fiber.interrupt(events)
    })
  )

  it.scoped.prop(
    "local-share without Redis, random takes and releases: never above the share or a tenant's share; no waiter left with room",
    [
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(
        fc.oneof(
          fc.record({ _tag: fc.constant("take" as const), tenant: fc.constantFrom("x", "y", "z") }),
          fc.record({ _tag: fc.constant("release" as const), pick: fc.nat() })
        ),
        { minLength: 1, maxLength: 12 }
      )
    ],
    ([share, tenantShareSeed, commands]) =>
      Effect.gen(function* () {
        const tenantShare = Math.min(share, tenantShareSeed)
        // Nothing listens on the port: every call fails at once with a connection error.
        const port = yield* RedisServer.freePort
        const a = yield* offlineInstance(
          `redis://127.0.0.1:${port}`,
          options(`p${port}`, { mode: "local-share", localShare: share, localTenantShare: tenantShare })
        )
        const granted: Array<{ readonly tenant: string; readonly close: Effect.Effect<void> }> = []
        const pending: Array<{ readonly tenant: string; readonly fiber: Fiber.RuntimeFiber<void, unknown> }> = []
        const count = (tenant: string) => granted.filter((g) => g.tenant === tenant).length
        const roomFor = (tenant: string) => granted.length < share && count(tenant) < tenantShare
        const check = Effect.gen(function* () {
          const held = (yield* a.stats).held
          assert.isAtMost(held, share, "never above the local share")
          for (const t of ["x", "y", "z"]) assert.isAtMost(count(t), tenantShare, "never above the tenant's share")
          return pending.every((p) => !roomFor(p.tenant)) && held === granted.length
        })
        for (const c of commands) {
          if (c._tag === "take") {
            const entry = { tenant: c.tenant, fiber: undefined as unknown as Fiber.RuntimeFiber<void, unknown> }
            entry.fiber = yield* Effect.fork(
              Effect.flatMap(hold(a, c.tenant), (h) =>
                Effect.sync(() => {
                  granted.push({ tenant: c.tenant, close: h.close })
                  pending.splice(pending.indexOf(entry), 1)
                })
              )
            )
            pending.push(entry)
          } else if (granted.length > 0) {
            const [g] = granted.splice(c.pick % granted.length, 1)
            yield* g!.close
          }
          // A take is granted at once when there is room; a release wakes the waiters.
          yield* eventually(check, "every waiter with room is served", 2_000)
        }
        assert.strictEqual((yield* a.stats).failOpen, (yield* a.stats).granted)
        for (const p of pending) yield* Fiber.interrupt(p.fiber)
      }),
    { timeout: 60_000, fastCheck: { numRuns: 15 } }
  )

  it.scoped("onFull runs once, at the first full answer; a connection it closes asynchronously serves the waiter", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("m5", { instanceId: "a", total: 2, perTenant: 1 }))
      let runs = 0
      const count = (answer: boolean) =>
        Effect.as(
          Effect.sync(() => runs++),
          answer
        )
      // Granted at once: the hook does not run.
      const idle = yield* hold(a, "t1", { onFull: count(true) })
      assert.strictEqual(runs, 0)
      // The tenant is full: the hook runs once; it closes nothing, so the call waits and retries as usual.
      const waiting = yield* Effect.fork(hold(a, "t1", { onFull: count(false) }))
      yield* eventually(
        Effect.map(stat(a, "waiters"), (n) => n === 1),
        "the second t1 permit waits"
      )
      yield* tickUntil(
        Effect.sync(() => runs === 1),
        "the hook ran"
      )
      let steps = 0
      yield* tickUntil(
        Effect.sync(() => steps++ === 8),
        "two seconds of retries"
      )
      assert.strictEqual(runs, 1, "once per call, not per retry")
      yield* Fiber.interrupt(waiting)
      // The total is full (t1 + t2): the hook closes t1's idle connection in the background and answers
      // true; the release wakes the waiter. The clock never moves.
      yield* hold(a, "t2")
      const evict = Effect.sync(() => runs++).pipe(Effect.zipRight(Effect.forkDaemon(idle.close)), Effect.as(true))
      const got = yield* hold(a, "t3", { onFull: evict })
      assert.strictEqual(got.permit.tenant, "t3")
      assert.strictEqual(runs, 2)
      assert.include(yield* a.stats, { held: 2, waiters: 0 })
    })
  )

  it.scoped("a defect of onFull is logged and counts as false: the call still waits and gets a released permit", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const a = yield* makeInstance(server.url, options("m6", { instanceId: "a", total: 1 }))
      const first = yield* hold(a, "t")
      const waiting = yield* Effect.fork(hold(a, "t", { onFull: Effect.dieMessage("the pool's hook broke") }))
      yield* eventually(
        Effect.map(stat(a, "waiters"), (n) => n === 1),
        "the call waits"
      )
      yield* first.close
      const got = yield* Fiber.join(waiting)
      assert.strictEqual(got.permit.tenant, "t")
    })
  )

  it.scoped("config reads the mode and the local shares; a bad mode names its variable", () =>
    Effect.gen(function* () {
      const read = (entries: ReadonlyArray<readonly [string, string]>) =>
        Effect.withConfigProvider(ClusterBudget.config("m7"), ConfigProvider.fromMap(new Map(entries)))
      const parsed = yield* read([
        ["BUDGET_TOTAL", "10"],
        ["BUDGET_MODE", "local-share"],
        ["BUDGET_LOCAL_SHARE", "4"],
        ["BUDGET_LOCAL_TENANT_SHARE", "2"]
      ])
      assert.include(parsed, { name: "m7", total: 10, mode: "local-share", localShare: 4, localTenantShare: 2 })
      assert.isUndefined((yield* read([["BUDGET_TOTAL", "10"]])).mode, "fail-closed unless set")
      const bad = yield* Effect.flip(
        read([
          ["BUDGET_TOTAL", "10"],
          ["BUDGET_MODE", "open"]
        ])
      )
      assert.include(String(bad), "BUDGET_MODE")
      const zero = yield* Effect.flip(
        read([
          ["BUDGET_TOTAL", "10"],
          ["BUDGET_LOCAL_SHARE", "0"]
        ])
      )
      assert.include(String(zero), "BUDGET_LOCAL_SHARE")
    })
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
