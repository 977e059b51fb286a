/**
 * Where a relayed request's CPU goes: the relay taken apart, one piece added
 * at a time, each served on its own port in this process and loaded with a
 * fixed number of requests (`PARTS_REQUESTS`, 500) over `PARTS_CONNECTIONS`
 * (50) connections, so no request is cut and CPU per request is exact. It
 * prints, per path, the process's CPU time per request (autocannon and the
 * stand-in upstream included: see the `direct` row) and p50/p99.
 *
 * `PARTS_PATHS` picks some (comma-separated names, all by default).
 */

import * as Http from "node:http"
import { ConcurrencyLimit, StreamLease } from "@cistern/platform"
import { UpstreamPool, UpstreamRelay } from "@cistern/platform-node"
import { HttpRouter, HttpServer, HttpServerRequest, type HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import autocannon from "autocannon"
import { Config, ConfigProvider, Console, Context, Effect, Layer, Logger, LogLevel, Redacted, type Scope } from "effect"
import { Pool } from "undici"
import { bodyStream, sseResponse } from "./bench/sse.js"
import { listen, relayConfig } from "./Relay.js"
import * as Upstream from "./Upstream.js"

const settings = Config.all({
  requests: Config.integer("PARTS_REQUESTS").pipe(Config.withDefault(500)),
  connections: Config.integer("PARTS_CONNECTIONS").pipe(Config.withDefault(50)),
  paths: Config.option(Config.string("PARTS_PATHS"))
})

const body = JSON.stringify({ model: "relay-demo", stream: true, messages: [{ role: "user", content: "hi" }] })
const upstreamRequest = {
  path: "/v1/chat/completions",
  method: "POST" as const,
  headers: { "content-type": "application/json" }
}

const load = (url: string, connections: number, amount: number) =>
  Effect.promise(async () => {
    const cpu = process.cpuUsage()
    const result = await autocannon({
      url: `${url}/v1/chat/completions`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      connections,
      amount,
      timeout: 30
    })
    const used = process.cpuUsage(cpu)
    return {
      requests: result.requests.total,
      p50: result.latency.p50,
      p99: result.latency.p99,
      cpuMicros: Math.round((used.user + used.system) / Math.max(1, result.requests.total))
    }
  })

/** Serves one chat route on a free port of 127.0.0.1 in the current scope. */
const serve = <E>(
  handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, HttpServerRequest.HttpServerRequest | Scope.Scope>
) =>
  Effect.gen(function* () {
    const router = HttpRouter.empty.pipe(HttpRouter.post("/v1/chat/completions", handler))
    const context = yield* Layer.build(
      HttpServer.serve(router).pipe(
        Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 }))
      )
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    return address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : ""
  })

/** The same hop with `node:http` and an undici `Pool`, no Effect. */
const plain = (pool: Pool) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly url: string }>((resume) => {
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          pool
            .request({ ...upstreamRequest, body: Buffer.concat(chunks) })
            .then(({ body: upstreamBody }) => {
              res.writeHead(200, { "content-type": "text/event-stream" })
              upstreamBody.pipe(res)
            })
            .catch(() => res.destroy())
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as { port: number }
        resume(Effect.succeed({ server, url: `http://127.0.0.1:${address.port}` }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ url }) => url))

const main = Effect.gen(function* () {
  const { connections, paths, requests } = yield* settings
  const up = yield* Upstream.start({ tokens: 20, delayMs: 10 })
  const undiciPool = yield* Effect.acquireRelease(
    Effect.sync(() => new Pool(up.url, { connections: 600, keepAliveTimeout: 30_000 })),
    (pool) => Effect.promise(() => pool.destroy())
  )
  const pool = yield* UpstreamPool.make({
    maxPerKey: 600,
    maxTotal: 600,
    createConcurrency: 128,
    client: { keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000 }
  })
  const key = UpstreamPool.key(up.url)
  const limiter = yield* ConcurrencyLimit.make({ maxConcurrent: 1000 })
  const requestText = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.text)

  const viaUndici = (piped: boolean) =>
    Effect.gen(function* () {
      const text = yield* requestText
      const response = yield* Effect.promise((signal) => undiciPool.request({ ...upstreamRequest, body: text, signal }))
      return sseResponse(response.body, piped)
    }).pipe(Effect.orDie)
  const viaPoolGet = Effect.gen(function* () {
    const text = yield* requestText
    const connection = yield* pool.get(key)
    const response = yield* UpstreamPool.request(connection, { ...upstreamRequest, body: text })
    return sseResponse(response.body)
  }).pipe(Effect.orDie)
  const viaStreamLease = (
    leases: StreamLease.StreamLease<UpstreamPool.UpstreamKey, UpstreamPool.Connection, unknown>
  ) =>
    Effect.gen(function* () {
      const text = yield* requestText
      return yield* leases.respond(key, (connection) =>
        Effect.map(UpstreamPool.request(connection, { ...upstreamRequest, body: text }), (response) =>
          bodyStream(response.body)
        )
      )
    }).pipe(Effect.orDie)
  const viaUpstreamRelay = Effect.gen(function* () {
    const text = yield* requestText
    return yield* UpstreamRelay.respond(
      pool,
      key,
      { ...upstreamRequest, body: text },
      { format: "sse", maxDuration: "600 seconds" }
    )
  }).pipe(Effect.orDie)
  const withDeadline = StreamLease.make(pool, { format: "sse", maxDuration: "600 seconds" })

  const config = yield* Effect.withConfigProvider(
    relayConfig,
    ConfigProvider.fromMap(
      new Map([
        ["MAX_CONNECTIONS", "600"],
        ["MAX_KEEPALIVE_CONNECTIONS", "600"],
        ["MAX_CONCURRENT_REQUESTS", "1000"],
        ["POOL_TIMEOUT_SECONDS", "30"]
      ])
    )
  )
  const relay = yield* listen(
    { upstream: up.url, config, adminToken: Redacted.make("parts-admin-token-0123456789") },
    0
  )
  const targets: Array<readonly [string, string]> = [
    ["direct", up.url],
    ["undici relay", yield* plain(undiciPool)],
    ["effect, piped", yield* serve(viaUndici(true))],
    ["effect, Stream", yield* serve(viaUndici(false))],
    ["+ pool.get", yield* serve(viaPoolGet)],
    ["+ StreamLease", yield* serve(viaStreamLease(StreamLease.make(pool, { format: "sse" })))],
    ["+ maxDuration", yield* serve(viaStreamLease(withDeadline))],
    ["+ limit", yield* serve(ConcurrencyLimit.middleware(limiter)(viaStreamLease(withDeadline)))],
    ["UpstreamRelay", yield* serve(viaUpstreamRelay)],
    ["UpstreamRelay + limit", yield* serve(ConcurrencyLimit.middleware(limiter)(viaUpstreamRelay))],
    ["cistern relay", relay.url]
  ]
  const chosen = paths._tag === "Some" ? new Set(paths.value.split(",").map((p) => p.trim())) : undefined
  const selected = targets.filter(([name]) => chosen === undefined || chosen.has(name))
  yield* Console.log(`${requests} requests over ${connections} connections per path; upstream: 20 tokens, 10 ms apart`)
  for (const [, url] of selected) yield* load(url, Math.min(connections, 50), 100)
  yield* Console.log("| path | CPU µs/req | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: |")
  for (const [name, url] of selected) {
    const row = yield* load(url, connections, requests)
    yield* Console.log(`| ${name} | ${row.cpuMicros} | ${row.p50} | ${row.p99} |`)
  }
})

main.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), NodeRuntime.runMain)
