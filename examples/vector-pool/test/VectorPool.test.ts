import { assert, describe, layer } from "@effect/vitest"
import { Effect, Either, Logger, LogLevel, Ref, TestClock, TestContext, TestServices } from "effect"
import * as Connection from "../src/Connection.js"
import * as VectorPool from "../src/VectorPool.js"
import * as VectorStore from "../src/VectorStore.js"
import { backendPids, eventually, Postgres, runs, sessionCounter, sessions } from "./utils/Postgres.js"

const dimension = 16
const vector = (seed: number) => Array.from({ length: dimension }, (_, i) => Math.sin(seed * 7.1 + i * 1.3))

/** Ends, on the server, every session of `applicationName`; returns how many. */
const terminate = (url: string, applicationName: string) =>
  Effect.scoped(
    Effect.flatMap(Connection.connect({ url, applicationName: "test-killer" }), (killer) =>
      Connection.query<{ ok: boolean }>(
        killer,
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1",
        [applicationName]
      )
    )
  ).pipe(Effect.map((rows) => rows.length))

describe.skipIf(!runs)("VectorPool against a real PostgreSQL", () => {
  layer(Postgres.layer, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.scoped("100 concurrent workers on 10 connections: none fails, the server never sees more than 10", () =>
      Effect.gen(function* () {
        const server = yield* Postgres
        const applicationName = "workers-test"
        const pool = yield* VectorPool.make({ url: server.url, applicationName })
        yield* pool.use(VectorStore.migrate)
        yield* pool.use((c) =>
          VectorStore.insert(
            c,
            Array.from({ length: 50 }, (_, i) => ({ label: `doc-${i}`, embedding: vector(i) }))
          )
        )
        // The server's sessions of this pool before the run: the 10 connections opened at start.
        const opened = yield* backendPids(server.url, applicationName)
        assert.strictEqual(opened.length, 10)
        const counter = yield* sessionCounter(server.url, applicationName)
        const openOnClient = yield* Ref.make(0)
        // The backend that served each request, as the server tells it (`pg_backend_pid()`).
        const served = new Set<number>()

        // The worker of the service this comes from: lease, query, hold the connection a little (10 ms on the
        // server), give it back.
        const worker = (id: number) =>
          Effect.forEach(
            [0, 1, 2],
            (round) =>
              pool.use((connection) =>
                Effect.gen(function* () {
                  const stats = yield* pool.stats
                  yield* Ref.update(openOnClient, (m) => Math.max(m, stats.open))
                  const [{ pid }] = yield* Connection.query<{ pid: number }>(
                    connection,
                    "SELECT pg_backend_pid() AS pid, pg_sleep(0.01)"
                  )
                  served.add(pid)
                  return yield* VectorStore.search(connection, vector(id * 3 + round), 5)
                })
              ),
            { discard: false }
          )
        const outcomes = yield* Effect.forEach(
          Array.from({ length: 100 }, (_, i) => i),
          (id) => Effect.either(worker(id)),
          {
            concurrency: "unbounded"
          }
        )

        const failed = outcomes.filter(Either.isLeft)
        assert.deepStrictEqual(failed, [], "no worker fails")
        for (const outcome of outcomes) {
          if (Either.isRight(outcome)) for (const hits of outcome.right) assert.strictEqual(hits.length, 5)
        }
        const maxOnServer = yield* counter.max
        assert.isAbove(yield* counter.samples, 10, "pg_stat_activity was sampled during the run")
        assert.strictEqual(maxOnServer, 10, "never more than 10 sessions on the server (and all 10 were used)")
        assert.isAtMost(yield* Ref.get(openOnClient), 10)
        // Every one of the 300 requests ran on one of the 10 sessions the server had before the run.
        assert.deepStrictEqual(
          [...served].sort((a, b) => a - b),
          opened,
          "the 300 requests were served by exactly the 10 sessions opened at start"
        )
        assert.deepStrictEqual(yield* backendPids(server.url, applicationName), opened, "and those 10 are still open")
        const stats = yield* pool.stats
        assert.strictEqual(stats.requests, 2 + 300, "every lease is counted")
        assert.strictEqual(stats.created, 10, "no connection was made beyond the fixed 10")
        assert.strictEqual(stats.failedConnections, 0)
        assert.strictEqual(stats.timeouts, 0)
        console.log(
          `100 workers × 3 requests: at most ${maxOnServer} sessions seen in ${yield* counter.samples} samples`
        )
      })
    )

    it.scoped(
      "check-on-borrow: connections the server killed are rebuilt before they are lent, no caller sees it",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const applicationName = "borrow-test"
          // No retries: only the `SELECT 1` before each lease stands between a dead connection and the caller.
          const pool = yield* VectorPool.make({ url: server.url, applicationName, size: 4, retries: 0 })
          assert.strictEqual(yield* sessions(server.url, applicationName), 4)
          assert.strictEqual(yield* terminate(server.url, applicationName), 4)
          const versions = yield* Effect.forEach(Array.from({ length: 8 }), () => pool.use(Connection.serverVersion), {
            concurrency: 4
          })
          assert.isTrue(versions.every((v) => v === server.version))
          // A caller whose connection failed its check may be served by a connection another caller
          // returned first; the rebuild it started still lands (bounded: it runs on its own fiber).
          const stats = yield* eventually(
            pool.stats,
            (s) => s.created >= 8 && s.open === 4 && s.destroyed >= 4,
            "5 seconds"
          ).pipe(Effect.orElse(() => pool.stats))
          assert.strictEqual(stats.created, 8, "each killed connection was rebuilt once")
          assert.strictEqual(stats.destroyed, 4)
          assert.strictEqual(stats.open, 4)
          assert.strictEqual(yield* sessions(server.url, applicationName), 4)
        })
    )

    it.scoped(
      "idle connections are checked on their schedule (TestClock): dead ones are replaced with no request",
      () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const applicationName = "idle-check-test"
          // Real I/O waits on the live clock; the pool's schedules run on the TestClock.
          const live = TestServices.provideLive
          const pool = yield* VectorPool.make({
            url: server.url,
            applicationName,
            size: 3,
            idleCheckInterval: "30 seconds"
          })
          assert.strictEqual(yield* live(sessions(server.url, applicationName)), 3)
          yield* live(terminate(server.url, applicationName))
          yield* live(eventually(sessions(server.url, applicationName), (n) => n === 0))

          yield* TestClock.adjust("29 seconds")
          assert.strictEqual((yield* pool.stats).created, 3, "no check before the interval")
          yield* TestClock.adjust("1 second")
          const stats = yield* live(
            eventually(pool.stats, (s) => s.created === 6 && s.available === 3 && s.destroyed >= 3)
          )
          assert.strictEqual(stats.destroyed, 3)
          assert.strictEqual(stats.requests, 0, "no request was needed to find and replace them")
          assert.strictEqual(yield* live(sessions(server.url, applicationName)), 3)
        }).pipe(Effect.provide(TestContext.TestContext), Effect.provide(Logger.minimumLogLevel(LogLevel.Error)))
    )

    it.scoped("closing the scope ends every connection (close-all)", () =>
      Effect.gen(function* () {
        const server = yield* Postgres
        const applicationName = "close-test"
        const stats = yield* Effect.scoped(
          Effect.gen(function* () {
            const pool = yield* VectorPool.make({ url: server.url, applicationName, size: 5 })
            assert.strictEqual(yield* sessions(server.url, applicationName), 5)
            yield* pool.use(Connection.ping)
            return pool.stats
          })
        )
        // Finalizers run on fibers of their own: wait (bounded) for their counts.
        const after = yield* eventually(stats, (s) => s.open === 0 && s.destroyed >= 5, "5 seconds").pipe(
          Effect.orElse(() => stats)
        )
        assert.strictEqual(after.open, 0)
        assert.strictEqual(after.destroyed, 5)
        // The server drops a session's row once its backend has exited: poll briefly.
        const left = yield* eventually(sessions(server.url, applicationName), (n) => n === 0)
        assert.strictEqual(left, 0)
      })
    )
  })
})
