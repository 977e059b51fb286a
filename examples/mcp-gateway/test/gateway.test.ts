import { AdminHttp } from "@cistern/platform"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Redacted, Schema, Scope } from "effect"
import {
  adminToken,
  alive,
  captureLogs,
  eventually,
  gateway,
  makeUsers,
  quiet,
  request,
  secretsOf,
  serve,
  servers,
  settings,
  tokenOf
} from "./utils.js"

const Whoami = Schema.Struct({
  structuredContent: Schema.Struct({ server: Schema.String, connection: Schema.String, account: Schema.String })
})
const whoami = (result: unknown) => Schema.decodeUnknownSync(Whoami)(result).structuredContent

/** The multi-user MCP gateway's documented example bodies, verbatim. */
const documentedPoolStatus = {
  success: true as const,
  data: {
    totalConnections: 5,
    userConnectionCounts: { user1: 2, user2: 3 },
    connectionDetails: [
      {
        key: "user1:github-mcp",
        name: "github-mcp",
        userId: "user1",
        lastUsed: "2024-01-01T10:00:00.000Z",
        createTime: "2024-01-01T09:00:00.000Z",
        idleMinutes: 30
      }
    ],
    config: { maxConnectionsPerUser: 10, maxTotalConnections: 100, connectionTimeout: 1800000, cleanupInterval: 300000 }
  }
}
const documentedCleanup = {
  success: true as const,
  data: {
    message: "Cleanup completed",
    before: { totalConnections: 10, userConnectionCounts: { user1: 5, user2: 5 } },
    after: { totalConnections: 6, userConnectionCounts: { user1: 3, user2: 3 } },
    cleanedConnections: 4
  }
}

describe("the MCP gateway", () => {
  it.scopedLive("a credential change gives a new connection; the old one is closed once it is returned", () =>
    Effect.gen(function* () {
      const file = makeUsers(1)
      const { http, catalog } = yield* servers
      const { gateway: gw, users } = yield* gateway(catalog, file, settings())
      const first = whoami(yield* gw.callTool("user1", "remote-tools", "whoami", {}))
      const again = whoami(yield* gw.callTool("user1", "remote-tools", "whoami", {}))
      assert.strictEqual(again.connection, first.connection, "reused while the credential is unchanged")

      // a call holds the old connection while the credential changes
      const lease = yield* Scope.make()
      const key = {
        userId: "user1",
        server: "remote-tools",
        credential: (yield* users.credential("user1", "remote-tools")).pipe((o) =>
          o._tag === "Some" ? o.value : Redacted.make("")
        )
      }
      const held = yield* gw.pool.get(key).pipe(Scope.extend(lease))
      assert.strictEqual(held.id, first.connection)
      yield* users.setCredential("user1", "remote-tools", Redacted.make("remote-cred-user1-rotated"))

      const after = whoami(yield* gw.callTool("user1", "remote-tools", "whoami", {}))
      assert.notStrictEqual(after.connection, first.connection, "a new connection")
      assert.notStrictEqual(after.account, first.account, "opened with the new credential")
      let counts = yield* http.counts
      assert.strictEqual(counts.sessionsOpen[first.account], 1, "the old one stays open while it is leased")
      assert.strictEqual(counts.sessionsOpen[after.account], 1)

      yield* Scope.close(lease, Exit.void)
      counts = yield* eventually(http.counts, (c) => c.sessionsOpen[first.account] === 0, "the old session ends")
      assert.strictEqual(counts.sessionsOpen[after.account], 1)
      const stats = yield* gw.pool.stats
      assert.strictEqual(stats.size, 1)
      const later = whoami(yield* gw.callTool("user1", "remote-tools", "whoami", {}))
      assert.strictEqual(later.connection, after.connection, "the new connection is reused")
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive(
    "a crashed stdio server is rebuilt on the next call, whether it crashed during a call or while idle",
    () =>
      Effect.gen(function* () {
        const file = makeUsers(1)
        const { catalog } = yield* servers
        const { gateway: gw } = yield* gateway(
          catalog,
          file,
          settings({ acquireTimeout: Duration.seconds(30), connectTimeout: Duration.seconds(30) })
        )
        const pidOf = (connection: string) => Number(connection.replace("pid-", ""))

        const first = whoami(yield* gw.callTool("user1", "local-tools", "whoami", {}))
        assert.isTrue(alive(pidOf(first.connection)))
        // it dies during a call: the caller gets a typed error, the connection is closed
        const crash = yield* Effect.flip(gw.callTool("user1", "local-tools", "crash", {}))
        assert.strictEqual(crash._tag, "ConnectionLost")
        yield* eventually(
          Effect.sync(() => alive(pidOf(first.connection))),
          (a) => !a,
          "the process is gone"
        )
        assert.strictEqual((yield* gw.pool.stats).size, 0, "the broken connection left the pool")

        const second = whoami(yield* gw.callTool("user1", "local-tools", "whoami", {}))
        assert.notStrictEqual(second.connection, first.connection, "rebuilt on the next call")
        assert.strictEqual(second.account, first.account)

        // it dies while idle: the next call does not get the dead connection
        process.kill(pidOf(second.connection), "SIGKILL")
        yield* eventually(
          Effect.sync(() => alive(pidOf(second.connection))),
          (a) => !a,
          "the process is gone"
        )
        const third = whoami(yield* gw.callTool("user1", "local-tools", "whoami", {}))
        assert.notStrictEqual(third.connection, second.connection)
        const stats = yield* gw.pool.stats
        assert.strictEqual(stats.size, 1)
        assert.strictEqual(stats.created, 3)
      }).pipe(Effect.provide(quiet)),
    60_000
  )

  it.scopedLive(
    "a call to a server that hangs times out; its connection is closed and the next call gets a new one",
    () =>
      Effect.gen(function* () {
        const file = makeUsers(1)
        const { http, catalog } = yield* servers
        const { gateway: gw } = yield* gateway(catalog, file, settings({ callTimeout: Duration.millis(300) }))
        const first = whoami(yield* gw.callTool("user1", "remote-tools", "whoami", {}))
        const hung = yield* Effect.flip(gw.callTool("user1", "remote-tools", "hang", {}))
        assert.strictEqual(hung._tag, "ToolTimeout")
        yield* eventually(http.counts, (c) => c.sessionsOpen[first.account] === 0, "the stuck session ends")
        const next = whoami(yield* gw.callTool("user1", "remote-tools", "whoami", {}))
        assert.notStrictEqual(next.connection, first.connection)
      }).pipe(Effect.provide(quiet))
  )

  it.effect("the admin bodies' schemas decode the gateway's documented examples", () =>
    Effect.gen(function* () {
      const status = yield* Schema.decodeUnknown(AdminHttp.PoolStatusResponse)(documentedPoolStatus)
      assert.deepStrictEqual(status, documentedPoolStatus)
      const cleanup = yield* Schema.decodeUnknown(AdminHttp.CleanupConnectionsResponse)(documentedCleanup)
      assert.deepStrictEqual(cleanup, documentedCleanup)
    })
  )

  it.scopedLive(
    "GET /api/mcp/pool-status and POST /api/mcp/cleanup-connections answer the documented shapes, with the admin token only",
    () =>
      Effect.gen(function* () {
        const file = makeUsers(2)
        const { catalog } = yield* servers
        const { gateway: gw, users } = yield* gateway(
          catalog,
          file,
          settings({ maxConnectionsPerUser: 3, maxTotalConnections: 7 })
        )
        const url = yield* serve(gw, users)
        for (const user of ["user1", "user2"]) {
          const call = yield* request(`${url}/api/mcp/remote-tools/tools/echo`, {
            method: "POST",
            token: tokenOf(file, user),
            body: JSON.stringify({ text: "hi" })
          })
          assert.strictEqual(call.status, 200)
          assert.deepStrictEqual(call.json.data.structuredContent, { text: "hi" })
        }

        for (const token of [undefined, tokenOf(file, "user1"), "not-the-admin-token"]) {
          assert.strictEqual((yield* request(`${url}/api/mcp/pool-status`, { token })).status, 401)
          assert.strictEqual(
            (yield* request(`${url}/api/mcp/cleanup-connections`, { method: "POST", token })).status,
            401
          )
        }

        const status = yield* request(`${url}/api/mcp/pool-status`, { token: adminToken })
        assert.strictEqual(status.status, 200)
        const body = yield* Schema.decodeUnknown(AdminHttp.PoolStatusResponse)(status.json)
        assert.deepStrictEqual(Object.keys(status.json.data).sort(), Object.keys(documentedPoolStatus.data).sort())
        assert.strictEqual(body.data.totalConnections, 2)
        assert.deepStrictEqual(body.data.userConnectionCounts, { user1: 1, user2: 1 })
        assert.deepStrictEqual(body.data.connectionDetails.map((d) => [d.key, d.userId, d.name]).sort(), [
          ["user1:remote-tools", "user1", "remote-tools"],
          ["user2:remote-tools", "user2", "remote-tools"]
        ])
        assert.deepStrictEqual(body.data.config, {
          maxConnectionsPerUser: 3,
          maxTotalConnections: 7,
          connectionTimeout: 1_800_000,
          cleanupInterval: 300_000
        })

        const cleanup = yield* request(`${url}/api/mcp/cleanup-connections`, { method: "POST", token: adminToken })
        assert.strictEqual(cleanup.status, 200)
        const report = yield* Schema.decodeUnknown(AdminHttp.CleanupConnectionsResponse)(cleanup.json)
        assert.deepStrictEqual(report.data, {
          message: "Cleanup completed",
          before: { totalConnections: 2, userConnectionCounts: { user1: 1, user2: 1 } },
          after: { totalConnections: 2, userConnectionCounts: { user1: 1, user2: 1 } },
          cleanedConnections: 0
        })
      }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("no admin token, user token or credential appears in any response or log line", () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      const file = makeUsers(2)
      const secrets = [...secretsOf(file), "remote-cred-user1-rotated-x"]
      const { catalog } = yield* servers
      const { gateway: gw, users } = yield* gateway(catalog, file, settings({ callTimeout: Duration.millis(300) }))
      const url = yield* serve(gw, users)
      const user1 = tokenOf(file, "user1")
      const answers = [
        yield* request(`${url}/api/mcp/remote-tools/tools/whoami`, { method: "POST", token: user1 }),
        yield* request(`${url}/api/mcp/remote-tools/tools`, { token: user1 }),
        yield* request(`${url}/api/mcp/remote-tools/tools/hang`, { method: "POST", token: user1 }),
        yield* request(`${url}/api/mcp/remote-tools/tools/nope`, { method: "POST", token: user1 }),
        yield* request(`${url}/api/mcp/unknown/tools/echo`, { method: "POST", token: user1 }),
        yield* request(`${url}/api/mcp/remote-tools/tools/echo`, {
          method: "POST",
          token: user1,
          body: `{"text": "${adminToken}"`
        }),
        yield* request(`${url}/api/mcp/remote-tools/credential`, {
          method: "PUT",
          token: user1,
          body: JSON.stringify({ credential: "remote-cred-user1-rotated-x" })
        }),
        yield* request(`${url}/api/mcp/remote-tools/tools/whoami`, { method: "POST", token: user1 }),
        // a token where no token belongs: in the query string, as another user's credential
        yield* request(`${url}/api/mcp/pool-status?token=${adminToken}`, { token: tokenOf(file, "user2") }),
        yield* request(`${url}/api/mcp/remote-tools/tools/whoami?t=${user1}`, { method: "POST", token: adminToken }),
        yield* request(`${url}/api/mcp/pool-status`, { token: adminToken }),
        yield* request(`${url}/api/mcp/cleanup-connections`, { method: "POST", token: adminToken })
      ]
      assert.deepStrictEqual(
        answers.map((a) => a.status),
        [200, 200, 504, 200, 404, 400, 200, 200, 401, 401, 200, 200]
      )
      const responses = answers.map((a) => `${JSON.stringify(a.headers)}\n${a.text}`)
      assert.isAbove(logs.lines.length, 10, "there are log lines to look at")
      for (const secret of secrets) {
        for (const text of [...responses, ...logs.lines]) assert.notInclude(text, secret)
      }
    }).pipe(Effect.provide(logs.layer))
  })
})
