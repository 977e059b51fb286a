import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Schema, TestClock } from "effect"
import { alive, eventually, gateway, makeUsers, quiet, servers, settings } from "./utils.js"

const Whoami = Schema.Struct({
  structuredContent: Schema.Struct({ connection: Schema.String, account: Schema.String })
})
const whoami = (result: unknown) => Schema.decodeUnknownSync(Whoami)(result).structuredContent

// The pool's time is the TestClock; the MCP servers and the connections are real.
describe("idle connections", () => {
  it.scoped(
    "are closed by the cleanup that runs every CLEANUP_INTERVAL once idle longer than CONNECTION_TIMEOUT",
    () =>
      Effect.gen(function* () {
        const file = makeUsers(3)
        const { http, catalog } = yield* servers
        const { gateway: gw } = yield* gateway(
          catalog,
          file,
          settings({ connectionTimeout: Duration.millis(60_000), cleanupInterval: Duration.millis(10_000) })
        )
        const call = (user: string, server = "remote-tools") =>
          Effect.map(gw.callTool(user, server, "whoami", {}), whoami)

        // t = 0: three users, one of them on both servers
        const user1 = yield* call("user1")
        const user2 = yield* call("user2")
        const user3 = yield* call("user3")
        const local = yield* call("user1", "local-tools")
        const pid = Number(local.connection.replace("pid-", ""))
        const open = (account: string) => Effect.map(http.counts, (c) => c.sessionsOpen[account] ?? 0)

        yield* TestClock.adjust("30 seconds")
        yield* call("user3") // user3's connection is used again at 30 s

        // 55 s: nobody has been idle for 60 s yet
        yield* TestClock.adjust("25 seconds")
        assert.strictEqual((yield* gw.pool.stats).size, 4)
        assert.strictEqual(yield* open(user1.account), 1)

        // 75 s: the cleanups at 60 and 70 s closed what was idle since 0 s; user3's (idle since 30 s) stays
        yield* TestClock.adjust("20 seconds")
        yield* eventually(gw.pool.stats, (s) => s.size === 1, "the pool keeps user3's connection only")
        yield* eventually(open(user1.account), (n) => n === 0, "user1's session ends")
        yield* eventually(open(user2.account), (n) => n === 0, "user2's session ends")
        yield* eventually(
          Effect.sync(() => alive(pid)),
          (a) => !a,
          "user1's stdio server exits"
        )
        assert.strictEqual(yield* open(user3.account), 1)
        assert.deepStrictEqual(
          (yield* gw.pool.items).map((item) => item.key),
          ["user3:remote-tools"]
        )

        // 100 s: user3's has been idle for 70 s
        yield* TestClock.adjust("25 seconds")
        yield* eventually(open(user3.account), (n) => n === 0, "user3's session ends")
        const stats = yield* gw.pool.stats
        assert.strictEqual(stats.size, 0)
        assert.strictEqual(stats.created, 4)

        // a call after all that opens a new connection
        const again = yield* call("user1")
        assert.notStrictEqual(again.connection, user1.connection)
      }).pipe(Effect.provide(quiet)),
    30_000
  )

  it.scoped("POST /api/mcp/cleanup-connections closes them at once, counting users before and after", () =>
    Effect.gen(function* () {
      const file = makeUsers(3)
      const { catalog } = yield* servers
      const { gateway: gw } = yield* gateway(catalog, file, settings({ connectionTimeout: Duration.millis(60_000) }))
      for (const user of ["user1", "user2", "user3"]) yield* gw.callTool(user, "remote-tools", "echo", { text: "x" })
      yield* gw.callTool("user1", "remote-tools", "echo", { text: "x" })
      yield* TestClock.adjust("50 seconds")
      yield* gw.callTool("user3", "remote-tools", "echo", { text: "x" })
      yield* TestClock.adjust("20 seconds") // 70 s: the first scheduled cleanup is at CLEANUP_INTERVAL, 5 minutes

      const status = yield* gw.poolStatus
      assert.deepStrictEqual(
        status.data.connectionDetails
          .map((d) => ({ key: d.key, createTime: d.createTime, lastUsed: d.lastUsed, idleMinutes: d.idleMinutes }))
          .sort((a, b) => a.key.localeCompare(b.key)),
        [
          {
            key: "user1:remote-tools",
            createTime: "1970-01-01T00:00:00.000Z",
            lastUsed: "1970-01-01T00:00:00.000Z",
            idleMinutes: 1
          },
          {
            key: "user2:remote-tools",
            createTime: "1970-01-01T00:00:00.000Z",
            lastUsed: "1970-01-01T00:00:00.000Z",
            idleMinutes: 1
          },
          {
            key: "user3:remote-tools",
            createTime: "1970-01-01T00:00:00.000Z",
            lastUsed: "1970-01-01T00:00:50.000Z",
            idleMinutes: 0
          }
        ]
      )

      const report = yield* gw.cleanupConnections
      assert.deepStrictEqual(report, {
        success: true,
        data: {
          message: "Cleanup completed",
          before: { totalConnections: 3, userConnectionCounts: { user1: 1, user2: 1, user3: 1 } },
          after: { totalConnections: 1, userConnectionCounts: { user3: 1 } },
          cleanedConnections: 2
        }
      })
    }).pipe(Effect.provide(quiet))
  )
})
