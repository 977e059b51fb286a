import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, TestClock } from "effect"
import { InvalidApiKey, MemoryUnavailable } from "../src/client/MemoryError.js"
import { awaitStatus } from "../src/MemoryClient.js"
import { account, armed, client, eventually, quiet, service, testSettings } from "./utils.js"

// Each test: a real memory service on a free port of 127.0.0.1, a real MCP
// client over its sockets, and the TestClock driving every interval, timeout
// and backoff of the pool and the client.

describe("MemoryClient timing (TestClock)", () => {
  it.scoped("pings the idle connection every MEM0_HEALTH_CHECK_INTERVAL and beats every MEM0_HEARTBEAT_INTERVAL", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(
        svc,
        testSettings({ healthCheckInterval: Duration.seconds(30), heartbeatInterval: Duration.seconds(45) })
      )
      yield* c.connect
      yield* armed(30_000)
      yield* TestClock.adjust("30 seconds")
      const first = yield* awaitStatus(c, (s) => s.checks === 1)
      assert.deepStrictEqual(
        [first.lastCheckAt, first.lastCheckOk, first.healthy, first.heartbeats],
        [30_000, true, true, 0]
      )

      yield* armed(45_000)
      yield* TestClock.adjust("15 seconds")
      const beat = yield* awaitStatus(c, (s) => s.heartbeats === 1)
      assert.deepStrictEqual([beat.lastHeartbeatAt, beat.checks], [45_000, 1])

      yield* armed(60_000)
      yield* TestClock.adjust("15 seconds")
      const second = yield* awaitStatus(c, (s) => s.checks === 2)
      assert.strictEqual(second.lastCheckAt, 60_000)
      assert.strictEqual(second.rebuilds, 0)

      const counts = yield* svc.counts
      assert.strictEqual(counts.methods.ping, 3, "two checks and one heartbeat reached the service")
      const stats = yield* c.stats
      assert.deepStrictEqual(
        stats.perKey[0].health.history.map((r) => [r.kind, r.at, r.ok]),
        [
          ["check", 30_000, true],
          ["heartbeat", 45_000, true],
          ["check", 60_000, true]
        ]
      )
    }).pipe(Effect.provide(quiet))
  )

  it.scoped("a failed check rebuilds the connection at once, re-validating the API key", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings())
      yield* c.connect
      yield* svc.host.injectFault({ kind: "reset", when: "before", method: "ping" })
      yield* armed(30_000)
      yield* TestClock.adjust("30 seconds")
      const rebuilt = yield* awaitStatus(c, (s) => s.rebuilds === 1)
      assert.strictEqual(rebuilt.lastCheckOk, false, "the check failed")
      assert.isTrue(rebuilt.healthy, "the new connection is healthy")
      assert.strictEqual(rebuilt.account, account, "the key was validated again")
      const counts = yield* svc.counts
      assert.strictEqual(counts.methods.initialize, 2)
      assert.strictEqual(counts.methods["tools/call whoami"], 2)

      // the rebuilt connection gets its heartbeat at 45 s and passes the next check at 60 s (one step at a
      // time: a single jump would also fire the heartbeat's own timeout before its real ping answers)
      yield* armed(45_000)
      yield* TestClock.adjust("15 seconds")
      yield* awaitStatus(c, (s) => s.heartbeats === 1)
      yield* armed(60_000)
      yield* TestClock.adjust("15 seconds")
      const next = yield* awaitStatus(c, (s) => s.checks === 2)
      assert.deepStrictEqual([next.lastCheckAt, next.lastCheckOk, next.rebuilds], [60_000, true, 1])
    }).pipe(Effect.provide(quiet))
  )

  it.scoped("retries back off as MEM0_RETRY_DELAY × MEM0_BACKOFF_FACTOR^n while the service is down", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings({ retryDelay: Duration.seconds(1), backoffFactor: 2, maxRetries: 5 }))
      yield* svc.host.stop
      const call = yield* Effect.fork(c.addMemory("written while the service restarts"))
      yield* armed(1_000)
      yield* TestClock.adjust("1 second")
      yield* armed(3_000)
      yield* TestClock.adjust("2 seconds")
      yield* armed(7_000)
      yield* svc.host.start
      yield* TestClock.adjust("4 seconds")
      const added = yield* Fiber.join(call)
      assert.isFalse(added.duplicate)
      const status = yield* c.status
      assert.deepStrictEqual(status.recentAttempts, [0, 1_000, 3_000, 7_000], "1 s, then 2 s, then 4 s")
      assert.deepStrictEqual([status.connections, status.healthy], [1, true])
      assert.strictEqual((yield* svc.counts).addApplied, 1)
    }).pipe(Effect.provide(quiet))
  )

  it.scoped("gives up after MEM0_MAX_RETRIES with the connection error", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings({ retryDelay: Duration.seconds(1), backoffFactor: 2, maxRetries: 2 }))
      yield* svc.host.stop
      const call = yield* Effect.fork(Effect.flip(c.searchMemories("anything")))
      yield* armed(1_000)
      yield* TestClock.adjust("1 second")
      yield* armed(3_000)
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(call)
      assert.instanceOf(error, MemoryUnavailable)
      assert.strictEqual((error as MemoryUnavailable).reason, "refused")
      assert.strictEqual((yield* c.status).connectAttempts, 3, "one try and two retries")
    }).pipe(Effect.provide(quiet))
  )
})

describe("MemoryClient API key", () => {
  it.scoped("a wrong API key fails at once with InvalidApiKey: no retry, no backoff", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings(), "not-the-key")
      // The TestClock never moves here: had any backoff run, the call would still be waiting.
      const error = yield* Effect.flip(c.addMemory("never stored"))
      assert.instanceOf(error, InvalidApiKey)
      assert.strictEqual((error as InvalidApiKey).status, 401)
      assert.include(error.message, "MEM0_API_KEY")
      const counts = yield* svc.counts
      assert.deepStrictEqual([counts.unauthorized, counts.addReceived], [1, 0], "one refused handshake, nothing else")
      const status = yield* c.status
      assert.deepStrictEqual([status.connectAttempts, status.connections, status.healthy], [1, 0, false])
      // startup validation fails the same way
      assert.instanceOf(yield* Effect.flip(c.connect), InvalidApiKey)
    }).pipe(Effect.provide(quiet))
  )

  it.scoped("a key revoked while connected is found at the rebuild, and the call fails with InvalidApiKey", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings())
      yield* c.addMemory("before the key was revoked")
      yield* svc.host.setApiKeys(new Map())
      yield* svc.host.resetConnections
      const call = yield* Effect.fork(Effect.flip(c.addMemory("after")))
      // the reset is retried after MEM0_RETRY_DELAY, on a new connection whose key is refused
      yield* armed(50)
      yield* TestClock.adjust("50 millis")
      const error = yield* Fiber.join(call)
      assert.instanceOf(error, InvalidApiKey)
      const status = yield* c.status
      assert.strictEqual(status.connections, 1, "no connection was made with the revoked key")
      const counts = yield* svc.counts
      assert.strictEqual(counts.addApplied, 1)
      assert.strictEqual(counts.unauthorized, 1, "one rebuild attempt, refused; no more")
    }).pipe(Effect.provide(quiet))
  )

  it.scoped("with MEM0_AUTO_REBUILD=false a broken call is not retried; the next call connects again", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings({ autoRebuild: false }))
      yield* c.connect
      yield* svc.host.injectFault({ kind: "reset", when: "before" })
      const error = yield* Effect.flip(c.addMemory("lost with the connection"))
      assert.instanceOf(error, MemoryUnavailable)
      assert.strictEqual((error as MemoryUnavailable).reason, "reset")
      assert.strictEqual((yield* c.status).healthy, false)
      const added = yield* c.addMemory("sent on a new connection")
      assert.isFalse(added.duplicate)
      const status = yield* c.status
      assert.deepStrictEqual([status.rebuilds, status.healthy], [1, true])
      assert.strictEqual((yield* svc.counts).addApplied, 1)
    }).pipe(Effect.provide(quiet))
  )
})

describe("one shared connection", () => {
  it.scoped("concurrent calls share the one connection: all of them in flight on one MCP session at once", () =>
    Effect.gen(function* () {
      const svc = yield* service
      const c = yield* client(svc, testSettings())
      yield* c.connect
      // The service holds every search until released: with exclusive leases only one could ever get there.
      yield* svc.host.hold("tools/call search_memories")
      const calls = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: 8 }, (_, i) => i),
          (i) => c.searchMemories(`query ${i}`),
          { concurrency: "unbounded" }
        )
      )
      yield* eventually(svc.counts, (counts) => counts.held === 8, "8 searches held at the service at once")
      const stats = yield* c.stats
      assert.deepStrictEqual(
        [stats.size, stats.inUse, stats.leases, stats.perKey[0].maxLeases],
        [1, 1, 8, 8],
        "one connection, 8 leases on it"
      )
      yield* svc.host.release
      const results = yield* Fiber.join(calls)
      assert.strictEqual(results.length, 8)
      const counts = yield* svc.counts
      assert.deepStrictEqual(
        [counts.sessionsOpened, counts.maxInFlight, counts.methods["tools/call search_memories"]],
        [1, 8, 8],
        "one MCP session served the 8 calls at the same time"
      )
      const status = yield* c.status
      assert.deepStrictEqual([status.connections, status.rebuilds], [1, 0])
    }).pipe(Effect.provide(quiet))
  )
})
