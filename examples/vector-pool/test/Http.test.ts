import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { HttpApiClient, HttpServer } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, layer } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer, Logger, LogLevel } from "effect"
import * as Api from "../src/Api.js"
import * as App from "../src/App.js"
import { eventually, Postgres, runs, sessions } from "./utils/Postgres.js"

const quiet = Logger.minimumLogLevel(LogLevel.Error)

/** The service in this process on a free port of 127.0.0.1, against the test file's PostgreSQL. */
const start = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const server = yield* Postgres
    const config = yield* Effect.withConfigProvider(App.config, ConfigProvider.fromJson({ PORT: "0", ...env }))
    const context = yield* Layer.build(App.layer(server.url, config))
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    const baseUrl = `http://127.0.0.1:${address.port}`
    const client = yield* HttpApiClient.make(Api.VectorApi, { baseUrl })
    return { baseUrl, client, server }
  })

describe.skipIf(!runs)("the HTTP API against a real PostgreSQL", () => {
  layer(Layer.merge(Postgres.layer, NodeHttpClient.layerUndici), { excludeTestServices: true, timeout: "60 seconds" })(
    (it) => {
      it.scoped("POST /vectors stores, POST /search finds the closest by cosine similarity", () =>
        Effect.gen(function* () {
          const { client } = yield* start({})
          const { ids } = yield* client.vectors.insert({
            payload: {
              vectors: [
                { label: "north", embedding: [0, 1, 0] },
                { label: "east", embedding: [1, 0, 0] },
                { label: "north-east", embedding: [1, 1, 0] },
                { label: "other dimension", embedding: [1, 0] }
              ]
            }
          })
          assert.strictEqual(ids.length, 4)
          const { results } = yield* client.vectors.search({ payload: { embedding: [0.9, 0.1, 0], limit: 3 } })
          assert.deepStrictEqual(
            results.map((r) => r.label),
            ["east", "north-east", "north"]
          )
          assert.closeTo(results[0].score, 0.9939, 1e-3)
          assert.closeTo(results[2].score, 0.1104, 1e-3)
          const byDefault = yield* client.vectors.search({ payload: { embedding: [1, 0] } })
          assert.deepStrictEqual(
            byDefault.results.map((r) => r.label),
            ["other dimension"],
            "only vectors of the query's dimension are compared"
          )
        }).pipe(Effect.provide(quiet))
      )

      it.scoped("a malformed body is a 400 naming the field, and nothing is stored", () =>
        Effect.gen(function* () {
          const { baseUrl, client } = yield* start({})
          const before = (yield* client.vectors.stats()).requests
          const post = (path: string, body: unknown) =>
            Effect.promise(() =>
              fetch(`${baseUrl}${path}`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify(body)
              }).then(async (r) => ({ status: r.status, body: await r.text() }))
            )
          const empty = yield* post("/search", { embedding: [] })
          assert.strictEqual(empty.status, 400)
          assert.include(empty.body, "an embedding has at least 1 number")
          const notNumbers = yield* post("/vectors", { vectors: [{ label: "x", embedding: ["a"] }] })
          assert.strictEqual(notNumbers.status, 400)
          const limit = yield* post("/search", { embedding: [1], limit: 1000 })
          assert.strictEqual(limit.status, 400)
          assert.strictEqual((yield* client.vectors.stats()).requests, before, "no connection was leased")
        }).pipe(Effect.provide(quiet))
      )

      it.scoped(
        "GET /health shows the monitor's history with the server version and pool stats; GET /stats counts requests",
        () =>
          Effect.gen(function* () {
            const { client, server } = yield* start({ HEALTH_CHECK_INTERVAL: "50 millis", HEALTH_HISTORY: "5" })
            const health = yield* eventually(client.vectors.health(), (h) => h.history.length === 5)
            assert.strictEqual(health.status, "healthy")
            assert.strictEqual(health.version, server.version)
            const last = health.history.at(-1)!
            assert.strictEqual(last.stats.poolSize, 10)
            assert.strictEqual(last.stats.open, 10)
            assert.isTrue(health.history.every((c, i) => i === 0 || c.at >= health.history[i - 1].at))
            const before = (yield* client.vectors.stats()).requests
            yield* Effect.forEach(
              Array.from({ length: 30 }),
              () => client.vectors.search({ payload: { embedding: [1, 2] } }),
              {
                concurrency: 30
              }
            )
            const stats = yield* client.vectors.stats()
            // The monitor leases too, on its schedule.
            assert.isAtLeast(stats.requests - before, 30)
            assert.strictEqual(stats.created, 10)
            assert.strictEqual(stats.poolSize, 10)
          }).pipe(Effect.provide(quiet))
      )

      it.scoped("closing the service ends all its connections", () =>
        Effect.gen(function* () {
          const server = yield* Postgres
          yield* Effect.scoped(start({}))
          assert.strictEqual(yield* eventually(sessions(server.url, "vector-pool"), (n) => n === 0), 0)
        }).pipe(Effect.provide(quiet))
      )
    }
  )
})

/** Runs `src/main.ts` as `pnpm example:vector` does, killing it if a test ends first. */
const main = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const { DATABASE_URL: _, ...rest } = process.env
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

describe.skipIf(!runs)("pnpm example:vector", () => {
  layer(NodeHttpClient.layerUndici, { excludeTestServices: true })((it) => {
    it.scoped(
      "without DATABASE_URL starts its own PostgreSQL, serves, and on SIGTERM stops everything and exits 0",
      () =>
        Effect.gen(function* () {
          const process = yield* main({ PORT: "0" })
          const url = yield* eventually(
            Effect.sync(() => /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(process.output())?.[1]),
            (url) => url !== undefined,
            "90 seconds"
          )
          const directory = /at postgres:\/\/postgres@127\.0\.0\.1:(\d+)/.exec(process.output())
          assert.isNotNull(directory, "it says where its PostgreSQL is")
          const client = yield* HttpApiClient.make(Api.VectorApi, { baseUrl: url! })
          const { ids } = yield* client.vectors.insert({ payload: { vectors: [{ label: "a", embedding: [1, 2, 3] }] } })
          assert.deepStrictEqual(ids, [1])
          const { results } = yield* client.vectors.search({ payload: { embedding: [1, 2, 3] } })
          assert.strictEqual(results[0].label, "a")
          const clusters = () => fs.readdirSync("/tmp").filter((name) => name.startsWith("cistern-pg-")).length
          const before = clusters()
          process.child.kill("SIGTERM")
          const code = yield* Effect.promise(() => process.exited).pipe(Effect.timeout("30 seconds"))
          assert.strictEqual(code, 0, process.output())
          assert.include(process.output(), "pool closed: 0 connections open")
          assert.strictEqual(clusters(), before - 1, "its cluster's directory is removed")
        }),
      { timeout: 150_000 }
    )
  })
})
