import { assert, describe, layer } from "@effect/vitest"
import { Clock, Duration, Effect, Fiber, Logger, LogLevel, Option, Ref, Schedule } from "effect"
import * as App from "../src/App.js"
import * as HealthMonitor from "../src/HealthMonitor.js"
import * as VectorPool from "../src/VectorPool.js"
import * as VectorStore from "../src/VectorStore.js"
import { backendPids, eventually, Postgres, runs, sessions } from "./utils/Postgres.js"

const query = [0.1, 0.2, 0.3, 0.4]

/** What the README documents a caller may see while the store restarts. */
const documented = new Set(["ConnectionError", "PoolTimeout"])

describe.skipIf(!runs)("a PostgreSQL restart during the run", () => {
  layer(Postgres.layer, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.scoped.each([
      { retries: 5, name: "with retries (the default)" },
      { retries: 0, name: "without retries" }
    ])(
      "$name: the pool rebuilds, callers see at most the documented errors, the health history shows the outage",
      ({ retries }) =>
        Effect.gen(function* () {
          const server = yield* Postgres
          const applicationName = `restart-test-${retries}`
          const pool = yield* VectorPool.make({ url: server.url, applicationName, retries })
          yield* pool.use(VectorStore.migrate)
          yield* pool.use((c) => VectorStore.insert(c, [{ label: "a", embedding: query }]))
          const monitor = yield* HealthMonitor.make({
            probe: App.versionProbe(pool),
            stats: pool.stats,
            schedule: Schedule.spaced("50 millis"),
            timeout: "1 second"
          })
          const before = yield* backendPids(server.url, applicationName)
          assert.strictEqual(before.length, 10)

          // 20 callers searching in a loop through the whole run, each outcome recorded.
          const outcomes = yield* Ref.make<ReadonlyArray<{ readonly outcome: string; readonly at: number }>>([])
          let stop = false
          const caller = pool
            .use((c) => VectorStore.search(c, query, 3))
            .pipe(
              Effect.as("ok"),
              Effect.catchAll((error) => Effect.succeed(error._tag)),
              Effect.flatMap((outcome) =>
                Effect.flatMap(Clock.currentTimeMillis, (at) =>
                  Ref.update(outcomes, (all) => [...all, { outcome, at }])
                )
              ),
              Effect.repeat({ until: () => stop, schedule: Schedule.spaced("5 millis") })
            )
          const callers = yield* Effect.forkScoped(
            Effect.all(
              Array.from({ length: 20 }, () => caller),
              { concurrency: "unbounded", discard: true }
            )
          )

          yield* Effect.sleep("300 millis")
          // Clock.currentTimeMillis, as the monitor's timestamps (it.scoped here runs on the live clock).
          const down = yield* Clock.currentTimeMillis
          yield* server.stop
          yield* Effect.sleep("1 second")
          yield* server.start
          const up = yield* Clock.currentTimeMillis
          // Healthy again, with a check that started after the server was back.
          yield* monitor.latest.pipe(
            Effect.repeat({
              until: Option.exists((c) => c.status === "healthy" && c.at >= up),
              schedule: Schedule.spaced("20 millis")
            }),
            Effect.timeout("15 seconds")
          )
          yield* Effect.sleep("300 millis")
          stop = true
          yield* Fiber.join(callers)

          const all = yield* Ref.get(outcomes)
          const errors = all.filter((o) => o.outcome !== "ok").map((o) => o.outcome)
          const undocumented = errors.filter((o) => !documented.has(o))
          assert.deepStrictEqual(undocumented, [], "callers see only the documented errors")
          assert.isTrue(
            all.some((o) => o.outcome === "ok" && o.at < down) && all.some((o) => o.outcome === "ok" && o.at > up),
            "callers were served before and after"
          )
          if (retries === 0) assert.isNotEmpty(errors, "without retries the outage reaches callers, as typed errors")
          console.log(
            `restart, ${retries} retries: ${all.length} calls, ${errors.length} failed (${[...new Set(errors)].join(", ") || "none"}), outage ${Duration.format(Duration.millis(up - down))}`
          )

          // Every request after the restart works, on rebuilt connections only.
          yield* Effect.forEach(Array.from({ length: 20 }), () => pool.use((c) => VectorStore.search(c, query, 1)), {
            concurrency: 10
          })
          // A rebuild outlives the caller who started it when another connection came back first: wait for it.
          const stats = yield* eventually(pool.stats, (s) => s.created >= 20, "5 seconds").pipe(
            Effect.orElse(() => pool.stats)
          )
          assert.isAtLeast(stats.created, 20, "the 10 connections were rebuilt")
          assert.isAtMost(stats.open, 10)
          const after = yield* eventually(backendPids(server.url, applicationName), (pids) => pids.length === 10)
          assert.strictEqual(after.length, 10)
          assert.deepStrictEqual(
            after.filter((pid) => before.includes(pid)),
            [],
            "no session from before the restart"
          )
          assert.strictEqual(yield* sessions(server.url, applicationName), 10)

          // The history: healthy, then the outage, then healthy again.
          const history = yield* monitor.history()
          const firstDown = history.findIndex((c) => c.status === "unhealthy")
          assert.isAbove(firstDown, 0, "healthy before the outage")
          const outage = history.filter((c) => c.status === "unhealthy")
          assert.isNotEmpty(outage, "the outage is in the history")
          // A check is unhealthy only if it ran while the server was down: its span [at, at + millis] meets [down, up].
          const outside = outage.filter(
            (c) => c.at + c.millis < down || c.at > up || c.version !== null || c.error === undefined
          )
          assert.deepStrictEqual(
            outside.map((c) => ({ at: c.at - down, millis: c.millis, error: c.error })),
            [],
            "unhealthy only between the stop and the start"
          )
          assert.strictEqual(history.at(-1)?.status, "healthy")
          assert.strictEqual(history.at(-1)?.version, server.version)
          console.log(`health history: ${history.length} checks, ${outage.length} unhealthy, e.g. "${outage[0].error}"`)
        }).pipe(Effect.provide(Logger.minimumLogLevel(LogLevel.Error))),
      { timeout: 60_000 }
    )
  })
})
