/**
 * The cluster budget under faults, across separate Node processes sharing
 * one real `redis-server` (started per test, on a free port of 127.0.0.1):
 * an instance paused past its lease, Redis paused shorter and longer than a
 * lease, Redis killed and restarted empty, an instance idling on every
 * permit while others wait; and, in this process, the reply of an acquire
 * lost on the wire. Ground truth is the echo server the instances connect
 * to: its live connections, checked at every connection it accepts and
 * sampled every 10 ms.
 *
 * The three instance processes boot once for the file (booting is the slow
 * part on a loaded machine) and run one round per test, each with the
 * settings that test needs. Real time: these are process and I/O tests;
 * every wait is bounded and names what it waited for.
 */

import { createHash } from "node:crypto"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as BudgetClient from "../src/internal/budgetClient.js"
import { script } from "../src/internal/budgetScript.js"
import * as RedisClient from "../src/RedisClient.js"
import { counted, makeInstance } from "./budget/instances.js"
import {
  type Echo,
  echoServer,
  type Holder,
  type HolderSettings,
  holder,
  holderCommand,
  sampleEvery10ms
} from "./budget/processes.js"
import { proxy } from "./budget/proxy.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually, since } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

const available = redisAvailable()

const total = 10

/** The instance processes and the echo server they connect to, shared by the file's tests. */
class Cluster extends Context.Tag("test/Cluster")<
  Cluster,
  { readonly echo: Echo; readonly holders: readonly [Holder, Holder, Holder] }
>() {}

const ClusterLive = Layer.scoped(
  Cluster,
  Effect.gen(function* () {
    const echo = yield* echoServer
    const command = yield* holderCommand
    const booting = performance.now()
    const holders = yield* Effect.all([holder(command), holder(command), holder(command)])
    yield* Effect.all(
      holders.map((h) => h.ready(120_000)),
      { concurrency: "unbounded", discard: true }
    )
    yield* Effect.log(`3 instance processes booted in ${Math.round(since(booting))} ms`)
    return { echo, holders }
  })
)

type Spec = Pick<HolderSettings, "wants"> & Partial<HolderSettings>

/**
 * Ends the last round in every process (waking any a test left stopped), waits for its
 * connections to close, and starts a round against `server` with one spec per instance
 * (`a`, `b`, `c`).
 */
const round = (
  server: RedisServer.RedisServer,
  base: { readonly name: string; readonly leaseMillis: number } & Partial<HolderSettings>,
  specs: readonly [Spec, Spec, Spec]
) =>
  Effect.gen(function* () {
    const { echo, holders } = yield* Cluster
    for (const h of holders) h.signal("SIGCONT")
    yield* Effect.all(
      holders.map((h) => h.leave(20_000)),
      { concurrency: "unbounded", discard: true }
    )
    yield* eventually(
      Effect.sync(() => echo.live().total === 0),
      "the last round's connections are closed",
      10_000
    )
    holders.forEach((h, i) => {
      h.join({
        url: server.url,
        instanceId: "abc"[i]!,
        total,
        perTenant: total,
        echoPort: echo.port,
        tenants: ["t"],
        churn: false,
        mode: "hold",
        commandTimeoutMillis: 500,
        ...base,
        ...specs[i]!
      })
    })
    return holders
  })

/**
 * The worst live connection counts per phase of a test: in total, and in total without
 * each instance (so a paused instance's connections can be told apart from the others').
 */
const watchLive = (echo: Echo) =>
  Effect.gen(function* () {
    let phase = "start"
    const peaks = new Map<string, { total: number; without: Record<string, number> }>()
    const look = () => {
      const live = echo.live()
      let peak = peaks.get(phase)
      if (peak === undefined) peaks.set(phase, (peak = { total: 0, without: {} }))
      peak.total = Math.max(peak.total, live.total)
      for (const instance of ["a", "b", "c"]) {
        const n = live.total - (live.instances[instance] ?? 0)
        peak.without[instance] = Math.max(peak.without[instance] ?? 0, n)
      }
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => echo.onOpen(look)),
      (stop) => Effect.sync(stop)
    )
    yield* sampleEvery10ms(look)
    return {
      phase: (next: string) => {
        look()
        phase = next
        look()
      },
      /** The worst total in `phase`, and without `instance` if given. */
      peak: (of: string, without?: string) => {
        const peak = peaks.get(of)
        if (peak === undefined) return 0
        return without === undefined ? peak.total : (peak.without[without] ?? 0)
      }
    }
  })

const report = (holders: ReadonlyArray<Holder>, echo: Echo) =>
  JSON.stringify({
    reports: holders.map((h) => h.report()),
    lost: holders.map((h) => h.lost()),
    live: echo.live()
  })

const held = (h: Holder) => h.report().held
const liveOf = (echo: Echo, instance: string) => echo.live().instances[instance] ?? 0
const steady = (what: string, check: () => boolean, holders: ReadonlyArray<Holder>, echo: Echo, withinMs = 30_000) =>
  eventually(Effect.sync(check), what, withinMs).pipe(
    Effect.mapError(
      (e) => new Error(`${e.message}\n${report(holders, echo)}\n${holders.map((h) => h.output()).join("\n")}`)
    )
  )

/** A wait that fails with the figures when it is not met. */
const within = (what: string, check: () => boolean, withinMs: number, holders: ReadonlyArray<Holder>, echo: Echo) =>
  steady(what, check, holders, echo, withinMs)

const sleep = (ms: number) => Effect.sleep(`${ms} millis`)

describe.skipIf(!available.run)("ClusterBudget under faults", () => {
  layer(ClusterLive, { timeout: "150 seconds", excludeTestServices: true })("across processes", (it) => {
    it.scoped(
      "an instance paused past its lease: its permits go to the others within lease + 1 s; woken, it sees lost and retires its connections",
      () =>
        Effect.gen(function* () {
          const { echo } = yield* Cluster
          const server = yield* RedisServer.make()
          const leaseMillis = 1_000
          const [a, b, c] = yield* round(server, { name: "paused-instance", leaseMillis }, [
            { wants: 6 },
            { wants: 5, waitForGo: true },
            { wants: 5, waitForGo: true }
          ])
          const all = [a, b, c]
          yield* steady("a holds 6", () => held(a) === 6 && liveOf(echo, "a") === 6, all, echo)
          b.go()
          c.go()
          yield* steady(
            "b and c share the 4 left",
            () => held(b) + held(c) === 4 && echo.live().total === total,
            all,
            echo
          )
          const watch = yield* watchLive(echo)
          watch.phase("stopped")
          a.signal("SIGSTOP")
          const stopped = performance.now()
          yield* within(
            "b and c get a's 6 while a is paused",
            () => held(b) + held(c) === total && liveOf(echo, "b") + liveOf(echo, "c") === total,
            leaseMillis + 5_000,
            all,
            echo
          )
          const reclaim = since(stopped)
          // a stays paused a little longer: its lease is long gone when it wakes.
          yield* sleep(300)
          watch.phase("waking")
          a.signal("SIGCONT")
          const woken = performance.now()
          yield* within("a retires its connections once awake", () => liveOf(echo, "a") === 0, 5_000, all, echo)
          const retire = since(woken)
          watch.phase("after")
          // a's workers want permits again while b and c hold all of them: it must get none.
          yield* sleep(1_000)
          const overshootPaused = watch.peak("stopped") - total
          yield* Effect.log(
            `paused instance: reclaim ${Math.round(reclaim)} ms, retire after waking ${Math.round(retire)} ms; ` +
              `worst live while paused ${watch.peak("stopped")} (others ${watch.peak("stopped", "a")}), ` +
              `after ${watch.peak("after")}; a lost ${JSON.stringify(a.lost())}`
          )
          assert.isBelow(reclaim, leaseMillis + 1_000, `a's permits went to b and c in ${Math.round(reclaim)} ms`)
          assert.isBelow(retire, 1_000, `a retired its connections ${Math.round(retire)} ms after waking`)
          assert.isAtMost(
            watch.peak("stopped", "a"),
            total,
            "the other instances never exceed the total while a is paused"
          )
          assert.isAtMost(
            overshootPaused,
            6,
            "while paused, the overshoot is at most the paused instance's connections (it cannot close them)"
          )
          assert.isAtMost(watch.peak("waking", "a"), total)
          assert.isAtMost(watch.peak("after"), total, "never above the total once a has retired its connections")
          assert.isTrue(
            a.lost().some((e) => e.permits === 6),
            `a heard that its lease of 6 permits was lost: ${JSON.stringify(a.lost())}`
          )
          assert.strictEqual(liveOf(echo, "a"), 0, "a has no connection while b and c hold all permits")
          assert.strictEqual(held(a), 0)
        }),
      120_000
    )

    it.scoped(
      "Redis paused for less than a lease: nothing is lost, nothing is retired, never above the total",
      () =>
        Effect.gen(function* () {
          const { echo } = yield* Cluster
          const server = yield* RedisServer.make()
          const raw = yield* rawClient(server.url)
          const leaseMillis = 4_000
          const pauseMillis = 1_000
          // c has one more worker than permits left: it keeps asking while Redis is paused and after.
          const [a, b, c] = yield* round(server, { name: "short-pause", leaseMillis, heartbeatMillis: 500 }, [
            { wants: 4 },
            { wants: 3 },
            { wants: 4, waitForGo: true }
          ])
          const all = [a, b, c]
          yield* steady("a and b hold 4 and 3", () => held(a) === 4 && held(b) === 3, all, echo)
          c.go()
          yield* steady(
            "a, b and c hold 4, 3 and 3",
            () => held(a) === 4 && held(b) === 3 && held(c) === 3 && echo.live().total === total,
            all,
            echo
          )
          const opened = ["a", "b", "c"].map((i) => echo.opened(i))
          const watch = yield* watchLive(echo)
          server.signal("SIGSTOP")
          yield* sleep(pauseMillis)
          server.signal("SIGCONT")
          const resumed = performance.now()
          yield* within(
            "every instance talks to Redis again",
            () => all.every((h) => h.report().state === "ok"),
            5_000,
            all,
            echo
          )
          const recovery = since(resumed)
          yield* steady(
            "Redis counts exactly the 10 live connections",
            () => echo.live().total === total,
            all,
            echo,
            5_000
          )
          const count = yield* counted(raw, "short-pause")
          yield* Effect.log(
            `Redis paused ${pauseMillis} ms (lease ${leaseMillis} ms): calls answered again ${Math.round(recovery)} ms ` +
              `after it resumed; worst live ${watch.peak("start")}; states seen ${JSON.stringify(all.map((h) => [...h.states()]))}`
          )
          assert.isAtMost(watch.peak("start"), total, "never above the total")
          assert.deepStrictEqual(
            ["a", "b", "c"].map((i) => echo.opened(i)),
            opened,
            "no connection was retired or replaced"
          )
          assert.deepStrictEqual(
            all.map((h) => h.report().leasesLost),
            [0, 0, 0],
            `no lease lost: ${report(all, echo)}`
          )
          assert.deepStrictEqual(
            all.map((h) => h.report().reclaimed),
            [0, 0, 0],
            "nothing was reclaimed"
          )
          assert.strictEqual(count.total, total, "Redis counts the 10 permits, no more")
          assert.strictEqual(count.permits, total)
        }),
      120_000
    )

    it.scoped(
      "Redis paused for longer than a lease: instances retire their connections, Redis learns, grants resume, never above the total",
      () =>
        Effect.gen(function* () {
          const { echo } = yield* Cluster
          const server = yield* RedisServer.make()
          const raw = yield* rawClient(server.url)
          const leaseMillis = 2_000
          const pauseMillis = leaseMillis + 1_500
          const [a, b, c] = yield* round(server, { name: "long-pause", leaseMillis }, [
            { wants: 4 },
            { wants: 3 },
            { wants: 4, waitForGo: true }
          ])
          const all = [a, b, c]
          yield* steady("a and b hold 4 and 3", () => held(a) === 4 && held(b) === 3, all, echo)
          c.go()
          yield* steady(
            "a, b and c hold 4, 3 and 3",
            () => held(a) === 4 && held(b) === 3 && held(c) === 3 && echo.live().total === total,
            all,
            echo
          )
          const watch = yield* watchLive(echo)
          let firstOpen: number | undefined
          server.signal("SIGSTOP")
          const paused = performance.now()
          // Past their local deadlines the instances give their permits up and close their connections.
          yield* within(
            "the instances retire their connections while Redis is paused",
            () => echo.live().total === 0,
            pauseMillis - 200,
            all,
            echo
          )
          const retired = since(paused)
          yield* sleep(pauseMillis - retired)
          const stopListening = echo.onOpen(() => {
            firstOpen ??= performance.now()
          })
          yield* Effect.addFinalizer(() => Effect.sync(stopListening))
          watch.phase("resumed")
          server.signal("SIGCONT")
          const resumed = performance.now()
          yield* within("10 connections live again", () => echo.live().total === total, leaseMillis + 8_000, all, echo)
          const recovery = since(resumed)
          const firstGrant = (firstOpen ?? performance.now()) - resumed
          yield* steady(
            "Redis counts exactly the live connections",
            () => echo.live().total === total,
            all,
            echo,
            2_000
          )
          yield* eventually(
            Effect.map(counted(raw, "long-pause"), (n) => n.total === total && n.permits === total),
            "Redis counts the 10 permits, no more (releases of the retired ones replayed)",
            5_000
          )
          yield* sleep(500)
          yield* Effect.log(
            `Redis paused ${pauseMillis} ms (lease ${leaseMillis} ms): connections retired ${Math.round(retired)} ms ` +
              `into the pause; first grant ${Math.round(firstGrant)} ms and all 10 back ${Math.round(recovery)} ms after it resumed; ` +
              `worst live while paused ${watch.peak("start")}, after ${watch.peak("resumed")}; ` +
              `states seen ${JSON.stringify(all.map((h) => [...h.states()]))}`
          )
          assert.isAtMost(watch.peak("start"), total, "never above the total while Redis is paused")
          assert.isAtMost(watch.peak("resumed"), total, "never above the total once Redis answers again")
          assert.isTrue(
            all.some((h) => h.states().has("learning")),
            "the instances saw Redis learning after the pause"
          )
          // Learning lasts a lease from Redis's first call after the pause: nothing is granted before.
          assert.isAtLeast(firstGrant, leaseMillis - 250, "no grant during the learning period")
          assert.isAtMost(echo.live().total, total)
          const count = yield* counted(raw, "long-pause")
          assert.strictEqual(count.total, echo.live().total, "no double count")
        }),
      120_000
    )

    it.scoped(
      "Redis killed and restarted empty on its port: scripts reloaded, holders re-assert, no double count, never above the total",
      () =>
        Effect.gen(function* () {
          const { echo } = yield* Cluster
          const server = yield* RedisServer.make()
          // Long enough that a slow restart on a loaded machine stays well inside the holders' local deadlines.
          const leaseMillis = 5_000
          const [a, b, c] = yield* round(
            server,
            { name: "restart", leaseMillis, heartbeatMillis: 500, reconnectMillis: 100 },
            [{ wants: 4 }, { wants: 3 }, { wants: 4, waitForGo: true }]
          )
          const all = [a, b, c]
          yield* steady("a and b hold 4 and 3", () => held(a) === 4 && held(b) === 3, all, echo)
          c.go()
          yield* steady(
            "a, b and c hold 4, 3 and 3",
            () => held(a) === 4 && held(b) === 3 && held(c) === 3 && echo.live().total === total,
            all,
            echo
          )
          const opened = ["a", "b", "c"].map((i) => echo.opened(i))
          const watch = yield* watchLive(echo)
          server.signal("SIGKILL")
          yield* server.exited
          const killed = performance.now()
          const restarted = yield* RedisServer.make({ port: server.port })
          const restart = since(killed)
          const raw = yield* rawClient(restarted.url)
          const countedNow = counted(raw, "restart")
          // Re-asserted: Redis counts again every connection still live (the script reloaded on its first call).
          yield* eventually(
            Effect.map(countedNow, (n) => n.total > 0 && n.total === echo.live().total && n.permits === n.total),
            "the holders re-assert their permits",
            leaseMillis
          ).pipe(Effect.mapError((e) => new Error(`${e.message}\n${report(all, echo)}`)))
          const reasserted = since(killed)
          const countAtReassert = (yield* countedNow).total
          // Past the learning period (a lease from the restart) the budget is full again, counted once.
          yield* eventually(
            Effect.map(
              countedNow,
              (n) =>
                since(killed) > leaseMillis && echo.live().total === total && n.total === total && n.permits === total
            ),
            "10 live connections, counted once, after the learning period",
            leaseMillis + 6_000
          ).pipe(Effect.mapError((e) => new Error(`${e.message}\n${report(all, echo)}`)))
          const recovered = since(killed)
          yield* sleep(300)
          const count = yield* countedNow
          const reopened = ["a", "b", "c"].map((i, n) => echo.opened(i) - opened[n]!)
          const sha = createHash("sha1").update(script).digest("hex")
          const loaded = (yield* Effect.promise(() => raw.script("EXISTS", sha))) as ReadonlyArray<number>
          yield* Effect.log(
            `Redis restarted empty in ${Math.round(restart)} ms; ${countAtReassert} permits re-asserted ${Math.round(reasserted)} ms ` +
              `and 10 live, counted once, ${Math.round(recovered)} ms after the kill; worst live ${watch.peak("start")}; ` +
              `connections replaced ${JSON.stringify(reopened)}; lost ${JSON.stringify(all.map((h) => h.lost()))}; ` +
              `states seen ${JSON.stringify(all.map((h) => [...h.states()]))}`
          )
          assert.deepStrictEqual(loaded, [1], "the restarted Redis has the script again (EVALSHA fell back to EVAL)")
          assert.isAtMost(watch.peak("start"), total, "never above the total")
          assert.strictEqual(echo.live().total, total, `10 live: ${report(all, echo)}`)
          assert.strictEqual(count.total, total, `Redis counts each live connection once: ${report(all, echo)}`)
          assert.strictEqual(count.permits, total)
          // Every instance re-asserts and keeps its connections; c's waiting worker may reach the restarted
          // Redis before c's heartbeat: it hears learning (not lost), and c re-asserts at once.
          assert.deepStrictEqual(reopened, [0, 0, 0], `every instance kept its connections: ${report(all, echo)}`)
          assert.deepStrictEqual(
            all.map((h) => h.lost().length),
            [0, 0, 0],
            `no instance lost its lease: ${report(all, echo)}`
          )
          assert.deepStrictEqual(
            all.map((h) => h.report().leasesLost),
            [0, 0, 0],
            `no instance lost its lease: ${report(all, echo)}`
          )
        }),
      120_000
    )

    it.scoped(
      "fairness: an instance idling on every permit closes idle connections down to its share; the others get theirs within two heartbeats",
      () =>
        Effect.gen(function* () {
          const { echo } = yield* Cluster
          const server = yield* RedisServer.make()
          const heartbeatMillis = 1_500
          const [a, b, c] = yield* round(
            server,
            { name: "fairness", leaseMillis: 3 * heartbeatMillis, heartbeatMillis, fair: true },
            [
              { wants: total, mode: "idle" },
              { wants: 4, waitForGo: true },
              { wants: 4, waitForGo: true }
            ]
          )
          const all = [a, b, c]
          yield* steady("a holds all 10, idle", () => held(a) === total && liveOf(echo, "a") === total, all, echo)
          const watch = yield* watchLive(echo)
          b.go()
          c.go()
          const asked = performance.now()
          // Three instances with demand: a share is ⌊10 / 3⌋ = 3.
          yield* within(
            "b and c each hold their share of 3",
            () => liveOf(echo, "b") >= 3 && liveOf(echo, "c") >= 3,
            4 * heartbeatMillis,
            all,
            echo
          )
          const shared = since(asked)
          // One more heartbeat: a must not close more than it was over.
          yield* sleep(heartbeatMillis + 200)
          const live = echo.live()
          yield* Effect.log(
            `fairness: b and c got their shares ${Math.round(shared)} ms after asking (heartbeat ${heartbeatMillis} ms); ` +
              `a closed ${a.report().evicted} idle connections; live ${JSON.stringify(live.instances)}; worst ${watch.peak("start")}`
          )
          assert.isAtMost(shared, 2 * heartbeatMillis, `shares within two heartbeats: ${Math.round(shared)} ms`)
          assert.isAtMost(watch.peak("start"), total, "never above the total")
          assert.strictEqual(a.report().evicted, 7, "a closed exactly what it held above its share")
          assert.deepStrictEqual(
            [b.report().evicted, c.report().evicted],
            [0, 0],
            "b and c, over their share while the other waits, close nothing: their connections are in use"
          )
          assert.strictEqual(live.instances.a, 3)
          assert.strictEqual(live.total, total)
        }),
      120_000
    )
  })

  it.scopedLive(
    "the reply of an acquire lost on the wire: retried with the same id it is one permit; the service fails closed and leaks nothing",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const wire = yield* proxy(server.port)
        const raw = yield* rawClient(server.url)
        const client = yield* RedisClient.make({
          url: wire.url,
          commandTimeout: "2 seconds",
          reconnectMax: "50 millis"
        })
        const budget = BudgetClient.make(client, { prefix: "cistern:budget:", name: "wire", testClock: false })
        const caller = { instance: "w", epoch: "", leaseMillis: 10_000 }
        const acquire = {
          _tag: "acquire" as const,
          id: "w:1",
          tenant: "t",
          limit: total,
          tenantLimit: total,
          held: 0,
          waiting: 1
        }
        // Loads the script (EVALSHA, then EVAL) so the next reply is the acquire's.
        const first = yield* budget.call(caller, { _tag: "heartbeat", waiting: 0, limit: total, permits: [] })
        const epoch = { ...caller, epoch: first.epoch }
        wire.loseReply("acquire", "granted")
        const lostReply = yield* Effect.exit(budget.call(epoch, acquire))
        assert.isTrue(Exit.isFailure(lostReply), "the caller never saw the answer")
        assert.strictEqual(wire.lost(), 1)
        assert.deepStrictEqual(
          (yield* counted(raw, "wire")).fields,
          { "*": "1", "t:t": "1", "i:w": "1" },
          "Redis granted it"
        )
        yield* eventually(client.isReady, "the client reconnects", 5_000)
        const retried = yield* budget.call(epoch, acquire)
        const again = yield* budget.call(epoch, acquire)
        assert.deepStrictEqual([retried.status, again.status], ["granted", "granted"])
        const count = yield* counted(raw, "wire")
        assert.strictEqual(count.total, 1, "one permit however many times it was asked for")
        assert.strictEqual(count.permits, 1)
        assert.strictEqual((yield* budget.call(epoch, { _tag: "release", id: "w:1" })).status, "released")

        // The service: a permit whose reply is lost fails closed; its id's release is replayed by the heartbeat.
        const instance = yield* makeInstance(
          wire.url,
          { name: "wire-service", total, leaseTime: "3 seconds", heartbeatInterval: "200 millis" },
          { testClock: false, commandTimeout: "2 seconds" }
        )
        wire.loseReply("acquire", "granted")
        const failed = yield* Effect.flip(Effect.scoped(instance.permit("t")))
        assert.strictEqual(failed._tag, "BudgetUnavailable")
        assert.strictEqual(wire.lost(), 2)
        yield* eventually(
          Effect.zipWith(
            counted(raw, "wire-service"),
            instance.stats,
            (n, s) => n.total === 0 && n.permits === 0 && s.pendingReleases === 0 && s.held === 0
          ),
          "the granted but unanswered permit is released by the replay",
          5_000
        )
        yield* instance.permit("t")
        const after = yield* counted(raw, "wire-service")
        assert.strictEqual(after.total, 1, "one connection's permit, counted once")
        assert.strictEqual((yield* instance.stats).held, 1)
      }),
    60_000
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
