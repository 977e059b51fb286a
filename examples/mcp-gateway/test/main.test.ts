import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, type Console, Effect, Fiber, Schedule } from "effect"
import * as App from "../src/App.js"
import { captureLogs, request } from "./utils.js"

const adminToken = "program-admin-token-81c4d2"

/** Runs `App.program` (what `pnpm example:gateway` runs) with these variables, its console captured. */
const run = (variables: Record<string, string>) =>
  Effect.gen(function* () {
    const out: Array<string> = []
    const base = yield* Effect.console
    const console: Console.Console = {
      ...base,
      log: (...args) => Effect.sync(() => void out.push(args.join(" "))),
      error: (...args) => Effect.sync(() => void out.push(args.join(" ")))
    }
    const fiber = yield* App.program.pipe(
      Effect.withConsole(console),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(variables)))),
      Effect.forkScoped
    )
    return { fiber, output: () => out.join("\n") }
  })

describe("pnpm example:gateway", () => {
  it.scopedLive("refuses to start without ADMIN_TOKEN, or with an invalid setting, saying why (exit code 1)", () =>
    Effect.gen(function* () {
      const missing = yield* run({ PORT: "0" })
      assert.strictEqual(yield* Fiber.join(missing.fiber), 1)
      assert.include(missing.output(), "cannot start the MCP gateway")
      assert.include(missing.output(), "ADMIN_TOKEN")
      assert.notInclude(missing.output(), "listening on")

      const invalid = yield* run({ PORT: "0", ADMIN_TOKEN: adminToken, CONNECTION_TIMEOUT: "-5" })
      assert.strictEqual(yield* Fiber.join(invalid.fiber), 1)
      assert.include(invalid.output(), 'CONNECTION_TIMEOUT="-5"')
      assert.notInclude(invalid.output(), adminToken)

      const noUsers = yield* run({ PORT: "0", ADMIN_TOKEN: adminToken, GATEWAY_USERS_FILE: "/nonexistent/users.json" })
      assert.strictEqual(yield* Fiber.join(noUsers.fiber), 1)
      assert.include(noUsers.output(), "invalid users file /nonexistent/users.json")
    })
  )

  it.scopedLive(
    "prints `listening on http://127.0.0.1:<port>` once it serves, with the settings in milliseconds; closing it closes every connection",
    () => {
      const logs = captureLogs()
      return Effect.gen(function* () {
        const gateway = yield* run({
          PORT: "0",
          ADMIN_TOKEN: adminToken,
          MAX_CONNECTIONS_PER_USER: "3",
          MAX_TOTAL_CONNECTIONS: "7",
          CONNECTION_TIMEOUT: "20000",
          CLEANUP_INTERVAL: "5000",
          // The pool's generic names, set for some other program: not the gateway's variables, so not read.
          RETRY: "perhaps",
          MAX_PER_KEY: "0"
        })
        const url = yield* Effect.sync(
          () => /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(gateway.output())?.[1]
        ).pipe(
          Effect.flatMap((url) => (url === undefined ? Effect.fail("not listening yet") : Effect.succeed(url))),
          Effect.retry(Schedule.spaced("50 millis")),
          Effect.timeout("20 seconds")
        )
        for (const [server, user] of [
          ["remote-tools", "alice"],
          ["local-tools", "bob"]
        ]) {
          const call = yield* request(`${url}/api/mcp/${server}/tools/add`, {
            method: "POST",
            token: `${user}-demo-token`,
            body: JSON.stringify({ a: 2, b: 3 })
          })
          assert.strictEqual(call.status, 200, call.text)
          assert.deepStrictEqual(call.json.data.structuredContent, { sum: 5 })
        }
        const status = yield* request(`${url}/api/mcp/pool-status`, { token: adminToken })
        assert.deepStrictEqual(status.json.data.config, {
          maxConnectionsPerUser: 3,
          maxTotalConnections: 7,
          connectionTimeout: 20000,
          cleanupInterval: 5000
        })
        assert.deepStrictEqual(status.json.data.userConnectionCounts, { alice: 1, bob: 1 })

        yield* Fiber.interrupt(gateway.fiber)
        assert.strictEqual(gateway.output().match(/listening on/g)?.length, 1, "printed once")
        const text = logs.lines.join("\n")
        assert.include(text, "MCP connection closed: alice:remote-tools")
        assert.include(text, "MCP connection closed: bob:local-tools")
        for (const secret of [adminToken, "alice-demo-token", "alice-remote-key", "bob-local-key"]) {
          assert.notInclude(text, secret)
          assert.notInclude(gateway.output(), secret)
        }
      }).pipe(Effect.provide(logs.layer))
    },
    30_000
  )
})
