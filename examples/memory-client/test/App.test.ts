import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { HttpServer } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Duration, Effect, Exit, Layer, Redacted, Schedule } from "effect"
import * as App from "../src/App.js"
import * as Settings from "../src/Settings.js"
import { quiet, testSettings } from "./utils.js"

const read = <A, E>(config: Effect.Effect<A, E>, env: Record<string, string>) =>
  Effect.exit(Effect.withConfigProvider(config, ConfigProvider.fromJson(env)))

describe("settings", () => {
  it.effect("reads the MEM0_* variables in seconds, with the memory client's defaults", () =>
    Effect.gen(function* () {
      const defaults = yield* Effect.withConfigProvider(Settings.config, ConfigProvider.fromJson({}))
      assert.deepStrictEqual(defaults, Settings.defaults)
      const set = yield* Effect.withConfigProvider(
        Settings.config,
        ConfigProvider.fromJson({
          MEM0_HEALTH_CHECK_INTERVAL: "20",
          MEM0_HEARTBEAT_INTERVAL: "30",
          MEM0_AUTO_REBUILD: "false",
          MEM0_CONNECTION_TIMEOUT: "0.5",
          // a value that names its unit keeps it
          MEM0_REQUEST_TIMEOUT: "2 minutes",
          MEM0_MAX_CONCURRENT_CALLS: "8"
        })
      )
      assert.strictEqual(Duration.toMillis(set.healthCheckInterval), 20_000, "20 means 20 seconds, not 20 ms")
      assert.strictEqual(Duration.toMillis(set.heartbeatInterval), 30_000)
      assert.strictEqual(Duration.toMillis(set.connectionTimeout), 500)
      assert.strictEqual(Duration.toMillis(set.requestTimeout), 120_000)
      assert.strictEqual(set.maxConcurrentCalls, 8)
      assert.isFalse(set.autoRebuild)
    })
  )

  it.effect("names the bad variable", () =>
    Effect.gen(function* () {
      for (const [name, value] of [
        ["MEM0_HEALTH_CHECK_INTERVAL", "soon"],
        ["MEM0_HEARTBEAT_INTERVAL", "0"],
        ["MEM0_CONNECTION_TIMEOUT", "-5"],
        ["MEM0_AUTO_REBUILD", "maybe"],
        ["MEM0_MAX_RETRIES", "-1"],
        ["MEM0_MAX_CONCURRENT_CALLS", "0"],
        ["MEM0_MAX_CONCURRENT_CALLS", "unbounded"]
      ]) {
        const exit = yield* read(Settings.config, { [name]: value })
        assert.isTrue(Exit.isFailure(exit), `${name}=${value} is refused`)
        if (Exit.isFailure(exit)) assert.include(String(exit.cause), `${name}=${JSON.stringify(value)}`)
      }
    })
  )
})

const config = (apiKey: string): App.AppConfig => ({
  port: 0,
  settings: testSettings(),
  apiKey: Redacted.make(apiKey),
  serviceApiKey: Redacted.make("app-test-key")
})

const http = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, body: (await response.json()) as any }
  })

describe("the HTTP API", () => {
  it.scopedLive("shows the connection's health, calls through the client, and survives the service's switches", () =>
    Effect.gen(function* () {
      const context = yield* Layer.build(App.layer(config("app-test-key")))
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
      const url = `http://127.0.0.1:${address.port}`

      const first = yield* http(`${url}/status`)
      assert.strictEqual(first.status, 200)
      assert.deepStrictEqual(
        [first.body.connection.healthy, first.body.connection.rebuilds, first.body.connection.account],
        [true, 0, "demo@example.com"]
      )
      assert.strictEqual(first.body.settings.MEM0_HEALTH_CHECK_INTERVAL, 30)
      assert.strictEqual(first.body.pool.name, "memory-service")

      const post = (text: string) =>
        http(`${url}/memories`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text })
        })
      const added = yield* post("the user prefers window seats")
      assert.deepStrictEqual([added.status, added.body.duplicate], [201, false])

      // the service resets every connection: the next call is rebuilt and retried, and succeeds
      yield* http(`${url}/service/reset`, { method: "POST" })
      const found = yield* http(`${url}/memories/search?q=window`)
      assert.deepStrictEqual(
        found.body.results.map((r: { id: string }) => r.id),
        [added.body.id]
      )

      // a restart: calls during the downtime are retried until it is back
      const restart = yield* http(`${url}/service/restart?downtime=0.2`, { method: "POST" })
      assert.strictEqual(restart.status, 202)
      const during = yield* post("written while the service restarts")
      assert.strictEqual(during.status, 201)

      const status = yield* http(`${url}/status`)
      assert.isTrue(status.body.connection.healthy)
      assert.isAtLeast(status.body.connection.rebuilds, 1)
      const counts = yield* http(`${url}/service/counts`)
      assert.deepStrictEqual([counts.body.addApplied, counts.body.restarts], [2, 1])

      const bad = yield* post("")
      assert.deepStrictEqual([bad.status, bad.body.error], [400, "ParseError"])
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("refuses to start with a key the service rejects", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(Layer.build(App.layer(config("wrong-key"))))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.include(String(exit.cause), "InvalidApiKey")
    }).pipe(Effect.provide(quiet))
  )
})

/** Runs `src/main.ts` as `pnpm example:memory` does, killed if the test ends first. */
const main = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const { MEM0_API_KEY: _, ...rest } = process.env
      const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
        cwd: fileURLToPath(new URL("..", import.meta.url)),
        env: { ...rest, NO_COLOR: "1", ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout?.on("data", (chunk) => (output += chunk))
      child.stderr?.on("data", (chunk) => (output += chunk))
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      return { child, output: () => output, exited }
    }),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
  )

describe("pnpm example:memory", () => {
  it.scopedLive(
    "prints `listening on http://127.0.0.1:<port>` once it serves, reads MEM0_* in seconds, shows each check on /status, stops on SIGTERM",
    () =>
      Effect.gen(function* () {
        // The variables in their unit, seconds: a check every 0.2 s, a heartbeat every 0.3 s.
        const child = yield* main({ PORT: "0", MEM0_HEALTH_CHECK_INTERVAL: "0.2", MEM0_HEARTBEAT_INTERVAL: "0.3" })
        const url = yield* Effect.sync(
          () => /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(child.output())?.[1]
        ).pipe(
          Effect.flatMap((url) => (url === undefined ? Effect.fail("not listening yet") : Effect.succeed(url))),
          Effect.retry(Schedule.spaced("100 millis")),
          Effect.timeout("90 seconds")
        )
        const startedAt = Date.now()
        // GET /status: health, the last check's time and the rebuild count, once checks have run.
        const status = yield* http(`${url}/status`).pipe(
          Effect.filterOrFail(
            (s) => s.body.connection.checks >= 2 && s.body.connection.heartbeats >= 1,
            () => "no checks yet"
          ),
          Effect.retry(Schedule.spaced("100 millis")),
          Effect.timeout("20 seconds")
        )
        const connection = status.body.connection
        assert.deepStrictEqual(
          [connection.healthy, connection.lastCheckOk, connection.rebuilds, connection.connections],
          [true, true, 0, 1]
        )
        const lastCheckAt = Date.parse(connection.lastCheckAt)
        assert.isAtLeast(lastCheckAt, startedAt - 1_000, "the last check's time is an ISO date of this run")
        assert.isAtMost(lastCheckAt, Date.now())
        assert.isString(connection.lastHeartbeatAt)
        assert.deepStrictEqual(
          [status.body.settings.MEM0_HEALTH_CHECK_INTERVAL, status.body.settings.MEM0_HEARTBEAT_INTERVAL],
          [0.2, 0.3]
        )
        child.child.kill("SIGTERM")
        yield* Effect.promise(() => child.exited).pipe(Effect.timeout("20 seconds"))
        assert.strictEqual(child.output().match(/listening on/g)?.length, 1, "printed once")
      }),
    150_000
  )

  it.scopedLive(
    "exits 1 with the reason when the API key is rejected",
    () =>
      Effect.gen(function* () {
        const child = yield* main({ PORT: "0", MEM0_API_KEY: "not-the-key" })
        const code = yield* Effect.promise(() => child.exited).pipe(Effect.timeout("90 seconds"))
        assert.strictEqual(code, 1)
        assert.include(child.output(), "rejected the API key (HTTP 401)")
        assert.notInclude(child.output(), "not-the-key", "the key itself is never printed")
      }),
    150_000
  )
})
