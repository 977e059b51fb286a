/**
 * Redis outages against a real `redis-server`: paused (SIGSTOP, so commands
 * hang), killed (SIGKILL) and restarted. Callers see no error, no call waits
 * longer than the command timeout, writes made meanwhile reach Redis
 * afterwards, and memory stays bounded. Real time (these are I/O tests),
 * bounded to a few seconds each.
 */

import { SessionMetrics } from "@cistern/session"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as RedisClient from "../src/RedisClient.js"
import * as RedisSessionStore from "../src/RedisSessionStore.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually, since } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

const Session = Schema.Struct({ userId: Schema.String, requests: Schema.Number })
type Session = typeof Session.Type

/**
 * A second, not less: a healthy command that outlasts it (a stalled event loop on a loaded 2-core CI
 * machine) sends the store into fallback and back, two log lines the SIGSTOP test does not expect.
 */
const commandTimeout = 1_000
/** What a call may take beyond the command timeout: timers and scheduling on a loaded 2-core CI machine. */
const slack = 500

const pause = (ms: number) => Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms)))

const makeStore = (url: string, options: Partial<RedisSessionStore.Options<Session, "user">> = {}) =>
  Effect.flatMap(
    RedisClient.make({ url, commandTimeout: `${commandTimeout} millis`, reconnectMax: "100 millis" }),
    (client) =>
      RedisSessionStore.make<Session, "user">({
        schema: Session,
        prefix: "o:",
        indexes: { user: (s) => s.userId },
        flushInterval: "50 millis",
        probeInterval: "100 millis",
        cacheTtl: "50 millis",
        ...options
      }).pipe(Effect.provideService(RedisClient.RedisClient, client))
  )

/** Runs `effect`, recording its real duration; the exit is returned, never thrown. */
const timed = <A, E>(latencies: Array<number>, effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const start = performance.now()
    const exit = yield* Effect.exit(effect)
    latencies.push(since(start))
    return exit
  })

/** Log messages, kept in order. */
const logged: Array<string> = []
const capture = Logger.make(({ message }) => {
  logged.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
})

const available = redisAvailable()

describe.skipIf(!available.run)("RedisSessionStore during outages", () => {
  it.scopedLive(
    "paused (SIGSTOP): every call returns within the command timeout; writes made meanwhile land after SIGCONT",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const store = yield* makeStore(server.url, { name: "paused" })
        const raw = yield* rawClient(server.url)
        const fallbackGauge = Effect.map(
          Metric.value(Metric.tagged(SessionMetrics.fallback, "store", "paused")),
          (state) => state.value
        )
        for (let i = 0; i < 10; i++) yield* store.set(`s${i}`, { userId: "u1", requests: 0 })
        yield* eventually(
          Effect.map(store.stats, (s) => s.pendingWrites === 0),
          "flushed"
        )
        yield* pause(60)

        server.signal("SIGSTOP")
        const latencies: Array<number> = []
        const exits: Array<Exit.Exit<unknown, unknown>> = []
        for (let round = 0; round < 20; round++) {
          exits.push(yield* timed(latencies, store.get(`s${round % 10}`)))
          exits.push(yield* timed(latencies, store.set(`outage${round}`, { userId: "u2", requests: round })))
          exits.push(
            yield* timed(
              latencies,
              store.update("s0", (s) => ({ ...s, requests: s.requests + 1 }))
            )
          )
          exits.push(yield* timed(latencies, store.findBy("user", "u2")))
          yield* pause(20)
        }
        const during = yield* store.stats
        assert.strictEqual(yield* fallbackGauge, 1, "the gauge switched at once")
        server.signal("SIGCONT")

        for (const exit of exits) assert.isTrue(Exit.isSuccess(exit), String(exit))
        const worst = Math.max(...latencies)
        console.info(`SIGSTOP: worst call ${worst.toFixed(1)} ms over ${latencies.length} calls`)
        assert.isAtMost(worst, commandTimeout + slack)
        assert.isAtMost(
          latencies.filter((l) => l > commandTimeout / 2).length,
          1,
          "only the call that found the outage waited for the timeout"
        )
        assert.isTrue(during.fallback)
        assert.isAtLeast(during.pendingWrites, 21)
        // Reads during the pause were served from memory, updates too.
        assert.strictEqual(Option.getOrThrow(yield* store.get("s0")).requests, 20)

        yield* eventually(
          Effect.map(store.stats, (s) => !s.fallback && s.pendingWrites === 0),
          "replayed after SIGCONT"
        )
        const after = yield* store.stats
        console.info(`SIGSTOP: ${after.replayedWrites} writes replayed, ${after.droppedWrites} dropped`)
        assert.strictEqual(yield* fallbackGauge, 0)
        // One log line per transition, however many calls ran into the outage.
        assert.deepStrictEqual(
          logged.filter((m) => m.startsWith("Redis ")),
          [
            "Redis unreachable: sessions are served from this instance's memory",
            "Redis reachable again: replaying writes kept in memory"
          ]
        )
        assert.isAtLeast(after.replayedWrites, 21)
        assert.strictEqual(after.droppedWrites, 0)
        const keys = Array.from({ length: 20 }, (_, i) => `o:s:outage${i}`)
        assert.strictEqual(yield* Effect.promise(() => raw.exists(...keys)), 20)
        const s0 = JSON.parse((yield* Effect.promise(() => raw.get("o:s:s0")))!)
        assert.strictEqual(s0.v.requests, 20)
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
  )

  it.scopedLive(
    "killed (SIGKILL) and restarted: calls never wait; pending writes stay bounded, are counted when dropped, and replay",
    () =>
      Effect.gen(function* () {
        const first = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        const server = yield* Scope.extend(RedisServer.make(), first)
        const store = yield* makeStore(server.url, { maxPending: 20, cacheCapacity: 60 })
        for (let i = 0; i < 5; i++) yield* store.set(`before${i}`, { userId: "u1", requests: i })
        yield* eventually(
          Effect.map(store.stats, (s) => s.pendingWrites === 0),
          "flushed"
        )

        server.signal("SIGKILL")
        yield* server.exited
        const latencies: Array<number> = []
        for (let i = 0; i < 50; i++) {
          const exit = yield* timed(latencies, store.set(`outage${i}`, { userId: "u2", requests: i }))
          assert.isTrue(Exit.isSuccess(exit))
          if (i % 10 === 0) yield* pause(30)
        }
        for (let i = 0; i < 5; i++) {
          const exit = yield* timed(
            latencies,
            store.update(`before${i}`, (s) => ({ ...s, requests: s.requests + 100 }))
          )
          assert.isTrue(Exit.isSuccess(exit))
        }
        yield* eventually(
          Effect.map(store.stats, (s) => s.fallback),
          "the store noticed"
        )
        const during = yield* store.stats
        const worst = Math.max(...latencies)
        console.info(`SIGKILL: worst call ${worst.toFixed(1)} ms; pending ${during.pendingWrites}`)
        assert.isAtMost(worst, commandTimeout + slack)
        assert.strictEqual(during.pendingWrites, 20, "bounded by maxPending")
        assert.strictEqual(during.droppedWrites, 35, "55 writes, 20 kept: the oldest 35 dropped and counted")
        assert.isAtMost(during.live, 60, "the cache stays within its capacity")
        yield* Scope.close(first, Exit.void)

        // Restarted on the same port, empty (no persistence): the store reconnects and replays.
        yield* RedisServer.make({ port: server.port })
        yield* eventually(
          Effect.map(store.stats, (s) => !s.fallback && s.pendingWrites === 0),
          "replayed after the restart"
        )
        const after = yield* store.stats
        console.info(`SIGKILL: ${after.replayedWrites} writes replayed, ${after.droppedWrites} dropped`)
        assert.strictEqual(after.replayedWrites, 20)
        const raw = yield* rawClient(server.url)
        const kept = [...Array.from({ length: 15 }, (_, i) => `o:s:outage${35 + i}`)]
        assert.strictEqual(yield* Effect.promise(() => raw.exists(...kept)), 15)
        const updated = JSON.parse((yield* Effect.promise(() => raw.get("o:s:before4")))!)
        assert.strictEqual(updated.v.requests, 104)
        // New writes go straight on.
        yield* store.set("later", { userId: "u3", requests: 0 })
        yield* eventually(
          Effect.map(
            Effect.promise(() => raw.exists("o:s:later")),
            (n) => n === 1
          ),
          "a write after recovery"
        )
      })
  )

  it.scopedLive("a store started while Redis is down serves from memory and catches up when it comes", () =>
    Effect.gen(function* () {
      const port = yield* RedisServer.freePort
      const url = `redis://127.0.0.1:${port}`
      const store = yield* Effect.flatMap(
        RedisClient.make({
          url,
          commandTimeout: "300 millis",
          connectTimeout: "200 millis",
          reconnectMax: "100 millis"
        }),
        (client) =>
          RedisSessionStore.make<Session, never>({ schema: Session, probeInterval: "100 millis" }).pipe(
            Effect.provideService(RedisClient.RedisClient, client)
          )
      )
      assert.isTrue((yield* store.stats).fallback)
      yield* store.set("a", { userId: "u1", requests: 1 })
      assert.deepStrictEqual(yield* store.get("a"), Option.some({ userId: "u1", requests: 1 }))
      yield* RedisServer.make({ port })
      yield* eventually(
        Effect.map(store.stats, (s) => !s.fallback && s.pendingWrites === 0),
        "caught up"
      )
      const raw = yield* rawClient(url)
      assert.strictEqual(yield* Effect.promise(() => raw.exists("cistern:session:s:a")), 1)
    })
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
