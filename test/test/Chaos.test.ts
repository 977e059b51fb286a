/**
 * Issue 3's real-fault scenarios: pooled real sockets through a chaos proxy to
 * a real server on 127.0.0.1. Waits are bounded (`eventually`), nothing is
 * asserted about wall-clock durations.
 */
import { HealthCheck, KeyedPool, type PoolError } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as ChaosProxy from "../utils/ChaosProxy.js"
import * as EchoServer from "../utils/EchoServer.js"
import { eventually } from "../utils/Eventually.js"
import * as LineClient from "../utils/LineClient.js"
import * as RedisServer from "../utils/RedisServer.js"

/** Every socket failure of the test client is a connection problem. */
const isConnectionError = (error: unknown) =>
  error instanceof LineClient.SocketError || HealthCheck.isConnectionError(error)

/**
 * An idempotent operation, bounded like a real client call would be. The bound is generous: with 200
 * callers on a loaded 2-core machine a round trip through the proxy takes up to a second, and a tighter
 * bound turned slow answers into destroyed connections, more connects and slower answers still (the
 * scenario of test 5 then ran past the test's timeout). Tests that need a hung call cut use their own.
 */
const ping = (client: LineClient.LineClient) =>
  client
    .request("PING")
    .pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Cause.TimeoutException() }))

/** Cheap validation: a socket the peer already reset or closed is not handed out. */
const stillOpen = (client: LineClient.LineClient) =>
  Effect.flatMap(client.isOpen, (open) => (open ? Effect.void : Effect.fail(new Error("socket closed"))))

/**
 * Counts the connections the pool made and closed, and keeps them to look at. `peak` is the most
 * connections the pool held at once: counted from a connect to the start of its close, as the pool
 * sees them (a proxy sees a closed socket go a moment later, while the pool may already have opened
 * its replacement).
 */
const tracked = (port: number) =>
  Effect.gen(function* () {
    const clients = yield* Ref.make<ReadonlyArray<LineClient.LineClient>>([])
    const closed = yield* Ref.make(0)
    let open = 0
    let peak = 0
    const acquire = (_key: string): Effect.Effect<LineClient.LineClient, LineClient.SocketError, Scope.Scope> =>
      Effect.tap(LineClient.connect({ port }), (client) =>
        Effect.uninterruptible(
          Effect.all([
            Ref.update(clients, (all) => [...all, client]),
            Effect.sync(() => {
              peak = Math.max(peak, ++open)
            }),
            Effect.addFinalizer(() =>
              Effect.zipRight(
                Ref.update(closed, (n) => n + 1),
                Effect.sync(() => open--)
              )
            )
          ])
        )
      )
    return { clients, closed, acquire, peak: Effect.sync(() => peak) }
  })

const fastRetry = Schedule.spaced("20 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

describe("chaos: real sockets through a faulty network", () => {
  it.scopedLive("1. all idle connections reset: the next 20 operations see no error", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const proxy = yield* ChaosProxy.make({ target: { port: server.port } })
      const { acquire, clients, closed } = yield* tracked(proxy.port)
      const pool = yield* KeyedPool.make({
        acquire,
        maxPerKey: 5,
        validate: stillOpen,
        isConnectionError,
        retry: fastRetry
      })
      yield* Effect.all(
        Array.from({ length: 5 }, () => pool.use("a", ping)),
        { concurrency: "unbounded" }
      )
      assert.strictEqual((yield* pool.stats).idle, 5)
      const before = yield* Ref.get(clients)
      yield* proxy.resetAll
      yield* eventually(
        Effect.forEach(before, (c) => c.isOpen),
        (open) => open.every((o) => !o),
        { label: "clients see their resets" }
      )
      const replies = yield* Effect.forEach(Array.from({ length: 20 }), () => pool.use("a", ping))
      assert.deepStrictEqual(new Set(replies), new Set(["PONG"]))
      assert.isAtLeast(yield* Ref.get(closed), 5, "the dead items were destroyed")
      const stats = yield* pool.stats
      const live = yield* Effect.forEach(yield* Ref.get(clients), (c) => c.isOpen)
      assert.strictEqual(live.filter(Boolean).length, stats.size, "every item in the pool is a live socket")
    })
  )

  it.scopedLive(
    "2. reset mid-operation: a typed retryable error, the item destroyed, success once the network passes",
    () =>
      Effect.gen(function* () {
        const server = yield* EchoServer.make
        const proxy = yield* ChaosProxy.make({ target: { port: server.port } })
        const { acquire, closed } = yield* tracked(proxy.port)
        const noRetry = yield* KeyedPool.make({ acquire, isConnectionError })
        // The request goes out (5 bytes), the reply's first byte trips the reset.
        yield* proxy.setMode(ChaosProxy.resetAfterBytes(5))
        const exit = yield* Effect.exit(noRetry.use("a", ping))
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        assert.instanceOf(error, LineClient.SocketError)
        assert.isTrue(isConnectionError(error), "classified as a connection error")
        assert.deepStrictEqual([(yield* noRetry.stats).idle, yield* Ref.get(closed)], [0, 1], "destroyed, not returned")

        const attempts = yield* Ref.make(0)
        const retrying = yield* KeyedPool.make({
          acquire,
          isConnectionError,
          createBackoff: false,
          retry: Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(100)))
        })
        const op = yield* Effect.fork(
          retrying.use("b", (c) =>
            Effect.zipRight(
              Ref.update(attempts, (n) => n + 1),
              ping(c)
            )
          )
        )
        yield* eventually(Ref.get(attempts), (n) => n >= 3, { label: "three failed attempts" })
        yield* proxy.setMode(ChaosProxy.pass)
        assert.strictEqual(yield* Effect.fromFiber(op), "PONG")
        const tries = yield* Ref.get(attempts)
        const stats = yield* retrying.stats
        assert.deepStrictEqual([stats.created, stats.destroyed, stats.idle], [tries, tries - 1, 1])
      })
  )

  it.scopedLive(
    "3. blackhole: in-flight work fails at its deadline, heartbeats find half-open idle sockets, then recovery",
    () =>
      Effect.gen(function* () {
        const server = yield* EchoServer.make
        const proxy = yield* ChaosProxy.make({ target: { port: server.port } })
        const { acquire } = yield* tracked(proxy.port)
        const pool = yield* KeyedPool.make({
          acquire,
          maxPerKey: 4,
          isConnectionError,
          heartbeat: { beat: ping, timeout: "300 millis" },
          heartbeatInterval: "200 millis"
        })
        yield* Effect.all(
          Array.from({ length: 4 }, () => pool.use("a", ping)),
          { concurrency: "unbounded" }
        )
        yield* proxy.setMode(ChaosProxy.blackhole)
        const hung = yield* Effect.exit(
          pool.use("a", (c) =>
            c
              .request("PING")
              .pipe(Effect.timeoutFail({ duration: "300 millis", onTimeout: () => new Cause.TimeoutException() }))
          )
        )
        assert.isTrue(Exit.isFailure(hung) && Cause.squash(hung.cause) instanceof Cause.TimeoutException)
        // Interval + timeout, with room for a loaded machine.
        yield* eventually(pool.stats, (s) => s.size === 0, {
          label: "heartbeats destroyed every half-open socket",
          timeout: "5 seconds"
        })
        const health = (yield* pool.stats).perKey[0]?.health
        assert.include(health?.lastCheck?.error ?? "", "timed out")
        yield* proxy.setMode(ChaosProxy.pass)
        assert.strictEqual(yield* pool.use("a", ping), "PONG")
      })
  )

  it.scopedLive("4. server restarted on the same port: no stale socket is handed out, the pool refills", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const { acquire, clients } = yield* tracked(server.port)
      const pool = yield* KeyedPool.make({
        acquire,
        minIdlePerKey: 2,
        isConnectionError,
        validate: stillOpen,
        healthCheck: { check: ping, timeout: "500 millis" },
        healthCheckInterval: "100 millis"
      })
      yield* Effect.all([pool.use("a", ping), pool.use("a", ping), pool.use("a", ping)], { concurrency: "unbounded" })
      const stale = new Set(yield* Ref.get(clients))
      yield* server.restart
      yield* eventually(
        Effect.forEach([...stale], (c) => c.isOpen),
        (open) => open.every((o) => !o),
        { label: "old sockets see the restart" }
      )
      for (let i = 0; i < 10; i++) {
        const used = yield* pool.use("a", (c) => Effect.as(ping(c), c))
        assert.isFalse(stale.has(used), "a stale socket was handed out")
      }
      const refilled = yield* eventually(pool.stats, (s) => s.idle >= 2 && s.size === s.idle, {
        label: "refilled to minIdlePerKey"
      })
      assert.isAtLeast(refilled.idle, 2)
    })
  )

  it.scopedLive("5. server down, 200 waiters over 10 keys, server back: bounded connects, everyone answered", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      yield* server.stop
      const proxy = yield* ChaosProxy.make({ target: { port: server.port } })
      const { acquire, peak } = yield* tracked(proxy.port)
      const keys = 10
      const createConcurrency = 2
      const maxTotal = 30
      const pool = yield* KeyedPool.make({
        acquire,
        maxPerKey: 5,
        maxTotal,
        createConcurrency,
        acquireTimeout: "4 seconds",
        createTimeout: "1 second",
        createBackoff: { initial: "20 millis", max: "200 millis" },
        isConnectionError,
        retry: Schedule.spaced("50 millis").pipe(Schedule.intersect(Schedule.recurs(40)))
      })
      yield* proxy.resetPeak
      const callers = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => `tenant-${i % keys}`),
        (key) => Effect.fork(Effect.exit(pool.use(key, ping))),
        { concurrency: "unbounded" }
      )
      yield* eventually(proxy.stats, (s) => s.total >= 2 * keys, { label: "connects during the outage" })
      const outage = yield* proxy.stats
      assert.isAtMost(outage.peak, createConcurrency * keys, "concurrent connects during the outage")
      yield* server.start
      const exits = yield* Effect.forEach(callers, (fiber) => Effect.fromFiber(fiber))
      assert.isAtMost(yield* peak, maxTotal, "never more connections than maxTotal")
      let served = 0
      for (const exit of exits) {
        if (Exit.isSuccess(exit)) {
          assert.strictEqual(exit.value, "PONG")
          served++
          continue
        }
        const error = Cause.squash(exit.cause) as PoolError.PoolError | LineClient.SocketError
        assert.oneOf(error._tag, ["PoolTimeout", "CreateTimeout", "SocketError"], `typed: ${String(error)}`)
      }
      assert.isAbove(served, 0)
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.waiting, stats.creating, stats.inUse], [0, 0, 0])
    })
  )
})

describe("chaos: Redis through the proxy", () => {
  if (!RedisServer.isInstalled()) {
    const reason = `${RedisServer.binary} is not on PATH: run .ci/install-servers.sh`
    // CI installs it (.ci/run): missing there is a failure, not a skip.
    if (process.env.CI) it(reason, () => assert.fail(reason))
    else it.skip(reason, () => {})
    return
  }

  it.scopedLive("connections to a real redis-server survive a reset of every idle socket", () =>
    Effect.gen(function* () {
      const redis = yield* RedisServer.make()
      const proxy = yield* ChaosProxy.make({ target: { port: redis.port } })
      const { acquire, clients } = yield* tracked(proxy.port)
      const pool = yield* KeyedPool.make({
        acquire,
        maxPerKey: 3,
        validate: stillOpen,
        isConnectionError,
        retry: fastRetry
      })
      const redisPing = (c: LineClient.LineClient) => c.request("PING")
      yield* Effect.all(
        Array.from({ length: 3 }, () => pool.use("cache", redisPing)),
        { concurrency: "unbounded" }
      )
      yield* proxy.resetAll
      yield* eventually(
        Effect.flatMap(Ref.get(clients), (all) => Effect.forEach(all, (c) => c.isOpen)),
        (open) => open.every((o) => !o),
        { label: "clients see their resets" }
      )
      const replies = yield* Effect.forEach(Array.from({ length: 10 }), () => pool.use("cache", redisPing))
      assert.deepStrictEqual(new Set(replies), new Set(["+PONG"]))
    })
  )
})
