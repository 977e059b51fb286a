import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Ref } from "effect"
import { eventually, gateway, makeUsers, quiet, request, serve, servers, settings, tokenOf } from "./utils.js"

describe("ten users calling tools at once", () => {
  it.scopedLive(
    "no user holds more than MAX_CONNECTIONS_PER_USER connections, and all users together never more than MAX_TOTAL_CONNECTIONS",
    () =>
      Effect.gen(function* () {
        const perUser = 2
        const total = 8
        const file = makeUsers(10)
        const { http, catalog } = yield* servers
        const { gateway: gw, users } = yield* gateway(
          catalog,
          file,
          // a stdio server is a new Node process per connection: slow to start on a busy machine
          settings({
            maxConnectionsPerUser: perUser,
            maxTotalConnections: total,
            acquireTimeout: Duration.seconds(30),
            connectTimeout: Duration.seconds(30)
          })
        )
        const url = yield* serve(gw, users)

        // the pool's own counts, sampled while the calls run
        const peaks = yield* Ref.make({ total: 0, group: 0, over: [] as Array<string> })
        const sampler = yield* Effect.fork(
          Effect.forever(
            Effect.gen(function* () {
              const stats = yield* gw.pool.stats
              const groups = stats.perGroup ?? []
              const biggest = Math.max(0, ...groups.map((g) => g.size))
              const over = groups.filter((g) => g.size > perUser).map((g) => `${g.group}=${g.size}`)
              if (stats.size > total) over.push(`total=${stats.size}`)
              yield* Ref.update(peaks, (p) => ({
                total: Math.max(p.total, stats.size),
                group: Math.max(p.group, biggest),
                over: [...p.over, ...over]
              }))
              yield* Effect.sleep("2 millis")
            })
          )
        )

        // each user: six calls at once on the HTTP server; users 1 and 2 also one on the stdio server
        const calls = file.users.flatMap((user, i) => [
          ...Array.from({ length: 6 }, (_, n) => ({ user: user.id, server: "remote-tools", n })),
          ...(i < 2 ? [{ user: user.id, server: "local-tools", n: 0 }] : [])
        ])
        const answers = yield* Effect.forEach(
          calls,
          (call) =>
            request(`${url}/api/mcp/${call.server}/tools/sleep`, {
              method: "POST",
              token: tokenOf(file, call.user),
              body: JSON.stringify({ ms: 40 })
            }),
          { concurrency: "unbounded" }
        )
        yield* Fiber.interrupt(sampler)

        assert.deepStrictEqual(
          answers.filter((a) => a.status !== 200).map((a) => a.text),
          [],
          "every call succeeds"
        )
        assert.strictEqual(answers.length, 62)
        const sampled = yield* Ref.get(peaks)
        assert.deepStrictEqual(sampled.over, [], "no sample above a limit")
        assert.strictEqual(sampled.total, total, "the pool did fill up")
        assert.strictEqual(sampled.group, perUser, "users did reach their limit")

        // the server's side: tool calls running at once, per user (their credential) and in all
        const counts = yield* http.counts
        assert.strictEqual(counts.calls.sleep, 60)
        for (const [account, peak] of Object.entries(counts.peakCalls)) {
          assert.isAtMost(peak, perUser, `calls at once of ${account}`)
        }
        assert.isAtMost(counts.peakCallsTotal, total)
        assert.isAbove(counts.peakCallsTotal, 1, "calls did run at once")

        // the engine closed idle connections to make room: more were opened than the total allows at once
        const stats = yield* gw.pool.stats
        assert.isAtMost(stats.size, total)
        assert.isAbove(stats.created, total)
        yield* eventually(http.counts, (c) => c.sessionsOpened - c.sessionsClosed <= total, "sessions closed")
      }).pipe(Effect.provide(quiet)),
    60_000
  )
})
