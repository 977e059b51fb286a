import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Ref } from "effect"
import type * as Gateway from "../src/Gateway.js"
import { eventually, gateway, makeUsers, quiet, request, serve, servers, settings, tokenOf } from "./utils.js"

interface Peaks {
  readonly total: number
  readonly group: number
  readonly leasesPerConnection: number
  readonly over: ReadonlyArray<string>
}

/** Samples the pool's stats every 5 ms: the biggest total, user group and leases on one connection, and any sample above a limit. */
const sample = (gw: Gateway.Service, limits: { perUser: number; total: number; calls: number }) =>
  Effect.gen(function* () {
    const peaks = yield* Ref.make<Peaks>({ total: 0, group: 0, leasesPerConnection: 0, over: [] })
    const fiber = yield* Effect.fork(
      Effect.forever(
        Effect.gen(function* () {
          const stats = yield* gw.pool.stats
          const groups = stats.perGroup ?? []
          const leases = Math.max(0, ...stats.perKey.map((k) => k.maxLeases ?? 0))
          const over = [
            ...groups.filter((g) => g.size > limits.perUser).map((g) => `${g.group}=${g.size}`),
            ...(stats.size > limits.total ? [`total=${stats.size}`] : []),
            ...(leases > limits.calls ? [`leases=${leases}`] : [])
          ]
          yield* Ref.update(peaks, (p) => ({
            total: Math.max(p.total, stats.size),
            group: Math.max(p.group, ...groups.map((g) => g.size)),
            leasesPerConnection: Math.max(p.leasesPerConnection, leases),
            over: [...p.over, ...over]
          }))
          yield* Effect.sleep("5 millis")
        })
      )
    )
    return Effect.zipRight(Fiber.interrupt(fiber), Ref.get(peaks))
  })

describe("connection limits", () => {
  it.scopedLive(
    "ten users calling at once: no user holds more than MAX_CONNECTIONS_PER_USER connections, all users together never more than MAX_TOTAL_CONNECTIONS, a connection never more than MAX_CALLS_PER_CONNECTION calls",
    () =>
      Effect.gen(function* () {
        const limits = { perUser: 2, total: 8, calls: 3 }
        const file = makeUsers(10)
        const { http, catalog } = yield* servers
        const { gateway: gw, users } = yield* gateway(
          catalog,
          file,
          settings({
            maxConnectionsPerUser: limits.perUser,
            maxTotalConnections: limits.total,
            maxCallsPerConnection: limits.calls,
            acquireTimeout: Duration.seconds(30)
          })
        )
        const url = yield* serve(gw, users)
        const stop = yield* sample(gw, limits)

        // each user: eight calls at once on two servers (five and three), so a user's limit spans both
        const calls = file.users.flatMap((user) =>
          ["remote-tools", "remote-tools", "remote-tools", "remote-tools", "remote-tools"]
            .concat(["search-tools", "search-tools", "search-tools"])
            .map((server) => ({ user: user.id, server }))
        )
        const answers = yield* Effect.forEach(
          calls,
          (call) =>
            request(`${url}/api/mcp/${call.server}/tools/sleep`, {
              method: "POST",
              token: tokenOf(file, call.user),
              body: JSON.stringify({ ms: 60 })
            }),
          { concurrency: "unbounded" }
        )
        const peaks = yield* stop

        assert.deepStrictEqual(
          answers.filter((a) => a.status !== 200).map((a) => a.text),
          [],
          "every call succeeds"
        )
        assert.strictEqual(answers.length, 80)
        assert.deepStrictEqual(peaks.over, [], "no sample above a limit")
        assert.strictEqual(peaks.total, limits.total, "the pool did fill up")
        assert.strictEqual(peaks.group, limits.perUser, "users did reach their limit")
        assert.strictEqual(peaks.leasesPerConnection, limits.calls, "connections did carry several calls at once")

        // the server's side: tool calls running at once, per credential (one user's, for one server) and in all
        const counts = yield* http.counts
        assert.strictEqual(counts.calls.sleep, 80)
        for (const [account, peak] of Object.entries(counts.peakCalls)) {
          assert.isAtMost(peak, limits.perUser * limits.calls, `calls at once of ${account}`)
        }
        assert.isAtMost(counts.peakCallsTotal, limits.total * limits.calls)
        assert.isAbove(
          Math.max(...Object.values(counts.peakCalls)),
          limits.perUser,
          "a user ran more calls at once than they have connections"
        )

        // the engine closed idle connections to make room: more were opened than the total allows at once
        const stats = yield* gw.pool.stats
        assert.isAtMost(stats.size, limits.total)
        assert.isAbove(stats.created, limits.total)
        yield* eventually(http.counts, (c) => c.sessionsOpened - c.sessionsClosed <= limits.total, "sessions closed")
      }).pipe(Effect.provide(quiet)),
    60_000
  )

  it.scopedLive("one MCP connection carries several calls at once, over stdio and over HTTP", () =>
    Effect.gen(function* () {
      const limits = { perUser: 10, total: 100, calls: 4 }
      const { http, catalog } = yield* servers
      const { gateway: gw } = yield* gateway(
        catalog,
        makeUsers(1),
        settings({ maxCallsPerConnection: limits.calls, acquireTimeout: Duration.seconds(30) })
      )
      const stop = yield* sample(gw, limits)
      const fourAtOnce = (server: string) =>
        Effect.forEach(Array.from({ length: 4 }), () => gw.callTool("user1", server, "sleep", { ms: 300 }), {
          concurrency: "unbounded"
        })
      yield* fourAtOnce("remote-tools")
      yield* fourAtOnce("local-tools")
      const peaks = yield* stop

      assert.strictEqual(peaks.leasesPerConnection, 4)
      const counts = yield* http.counts
      assert.strictEqual(counts.sessionsOpened, 1, "one HTTP session")
      assert.strictEqual(Math.max(...Object.values(counts.peakCalls)), 4, "running four calls at once")
      const stats = yield* gw.pool.stats
      assert.strictEqual(stats.created, 2, "one connection per server")
      assert.deepStrictEqual(stats.perKey.map((k) => [k.key, k.size]).sort(), [
        ["user1:local-tools", 1],
        ["user1:remote-tools", 1]
      ])
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive(
    "at a limit, the least recently used idle connection is closed to make room: the user's own first, then anyone's",
    () =>
      Effect.gen(function* () {
        const { http, catalog } = yield* servers
        const { gateway: gw } = yield* gateway(
          catalog,
          makeUsers(3),
          settings({ maxConnectionsPerUser: 2, maxTotalConnections: 4 })
        )
        const account = (user: string, server: string) =>
          Effect.map(
            gw.callTool(user, server, "whoami", {}),
            (r) => (r.structuredContent as { account: string }).account
          )
        const keys = Effect.map(gw.pool.items, (items) => items.map((i) => i.key).sort())
        const open = (a: string) => Effect.map(http.counts, (c) => c.sessionsOpen[a] ?? 0)

        // user1 at its limit of 2; a third server closes its least recently used one
        const remote1 = yield* account("user1", "remote-tools")
        yield* account("user1", "search-tools")
        yield* account("user1", "remote-tools") // remote-tools is now the more recently used
        yield* gw.callTool("user1", "local-tools", "echo", { text: "x" })
        assert.deepStrictEqual(yield* keys, ["user1:local-tools", "user1:remote-tools"])
        const search1 = yield* account("user1", "search-tools")
        assert.deepStrictEqual(yield* keys, ["user1:local-tools", "user1:search-tools"])
        yield* eventually(open(remote1), (n) => n === 0, "user1's remote-tools session ends")
        yield* eventually(open(search1), (n) => n === 1, "user1's new search-tools session")

        // the total of 4: user2 takes the 3rd and 4th; user3's first closes the least recently used of all (user1's)
        yield* account("user2", "remote-tools")
        yield* account("user2", "search-tools")
        assert.strictEqual((yield* gw.pool.stats).size, 4)
        yield* account("user3", "remote-tools")
        assert.deepStrictEqual(yield* keys, [
          "user1:search-tools",
          "user2:remote-tools",
          "user2:search-tools",
          "user3:remote-tools"
        ])
      }).pipe(Effect.provide(quiet)),
    30_000
  )
})
