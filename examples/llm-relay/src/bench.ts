/**
 * A load run on loopback, bounded: autocannon (Node API) with
 * `BENCH_CONNECTIONS` connections (400) for `BENCH_SECONDS` (20) seconds of
 * streamed chat completions, several ways in one run against one stand-in
 * upstream (`BENCH_TOKENS` tokens, one every `BENCH_TOKEN_DELAY_MS` ms);
 * `BENCH_PATHS` picks some (comma-separated ids, all by default):
 *
 * - `cistern`: this example's relay (pooled connections, `UpstreamRelay`,
 *   ConcurrencyLimit, sessions, breaker, admin API);
 * - `effect`: the same hop as a bare `@effect/platform` route (undici
 *   `Pool`, `NodeStream.fromReadable`, `HttpServerResponse.stream`), no Cistern;
 * - `effect-piped`: the same bare route answering with the undici body as a
 *   raw Node stream the server pipes (the Effect HTTP server's own floor);
 * - `undici`: the same hop with a plain undici `Pool` and `node:http`, no Effect;
 * - `direct`: straight to the upstream, no relay.
 *
 * It prints req/s, latency p50/p99, tokens/s, CPU time per request (this
 * process: relay, upstream and load generator together) and, for the Cistern
 * relay, the leases still held once the load has stopped (leaked leases).
 */

import * as Http from "node:http"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer, NodeRuntime, NodeStream } from "@effect/platform-node"
import autocannon from "autocannon"
import { Config, ConfigProvider, Console, Context, Duration, Effect, Layer, Logger, LogLevel, Redacted } from "effect"
import { Pool } from "undici"
import { listen, relayConfig } from "./Relay.js"
import * as Upstream from "./Upstream.js"

const settings = Config.all({
  connections: Config.integer("BENCH_CONNECTIONS").pipe(Config.withDefault(400)),
  seconds: Config.integer("BENCH_SECONDS").pipe(Config.withDefault(20)),
  tokens: Config.integer("BENCH_TOKENS").pipe(Config.withDefault(20)),
  delayMs: Config.integer("BENCH_TOKEN_DELAY_MS").pipe(Config.withDefault(10)),
  paths: Config.string("BENCH_PATHS").pipe(Config.withDefault("cistern,effect,effect-piped,undici,direct"))
})

const body = JSON.stringify({ model: "relay-demo", stream: true, messages: [{ role: "user", content: "hi" }] })

interface Row {
  readonly name: string
  readonly requests: number
  readonly errors: number
  readonly non2xx: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
  readonly tokensPerSecond: number
  /** CPU time (user + system) of this process per request: relay, upstream and load generator together. */
  readonly cpuMicros: number
}

const load = (
  name: string,
  url: string,
  up: Upstream.Upstream,
  connections: number,
  seconds: number,
  amount?: number
) =>
  Effect.gen(function* () {
    const before = up.tokensSent()
    const cpu = process.cpuUsage()
    const result = yield* Effect.promise(() =>
      autocannon({
        url: `${url}/v1/chat/completions`,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        connections,
        ...(amount === undefined ? { duration: seconds } : { amount }),
        timeout: 30
      })
    )
    const row: Row = {
      name,
      requests: result.requests.total,
      errors: result.errors + result.timeouts,
      non2xx: result.non2xx,
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      tokensPerSecond: Math.round((up.tokensSent() - before) / seconds),
      cpuMicros: cpuPerRequest(process.cpuUsage(cpu), result.requests.total)
    }
    return row
  })

const cpuPerRequest = (used: NodeJS.CpuUsage, requests: number) =>
  requests === 0 ? 0 : Math.round((used.user + used.system) / requests)

/** The same hop without Cistern: an undici Pool with as many connections, body piped through. */
const plainRelay = (upstream: string, connections: number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly pool: Pool; readonly url: string }>((resume) => {
      const pool = new Pool(upstream, { connections, keepAliveTimeout: 30_000 })
      const server = Http.createServer((req, res) => {
        const chunks: Array<Buffer> = []
        req.on("data", (c: Buffer) => chunks.push(c))
        req.on("end", () => {
          const controller = new AbortController()
          res.on("close", () => controller.abort())
          pool
            .request({
              path: "/v1/chat/completions",
              method: "POST",
              headers: { "content-type": "application/json" },
              body: Buffer.concat(chunks),
              signal: controller.signal
            })
            .then(({ body: upstreamBody }) => {
              res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
              upstreamBody.on("error", () => res.destroy())
              upstreamBody.pipe(res)
            })
            .catch(() => {
              if (!res.headersSent) res.writeHead(502)
              res.end()
            })
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const address = server.address() as { port: number }
        resume(Effect.succeed({ server, pool, url: `http://127.0.0.1:${address.port}` }))
      })
    }),
    ({ pool, server }) =>
      Effect.promise(async () => {
        server.closeAllConnections()
        await new Promise((r) => server.close(r))
        await pool.destroy()
      })
  )

/**
 * The same hop in `@effect/platform` without Cistern: the framework's own
 * cost. `piped`: the undici body goes out as a raw Node stream the server
 * pipes, instead of an Effect `Stream` pulled token by token.
 */
const effectRelay = (upstream: string, connections: number, piped = false) =>
  Effect.gen(function* () {
    const pool = yield* Effect.acquireRelease(
      Effect.sync(() => new Pool(upstream, { connections, keepAliveTimeout: 30_000 })),
      (pool) => Effect.promise(() => pool.destroy())
    )
    const router = HttpRouter.empty.pipe(
      HttpRouter.post(
        "/v1/chat/completions",
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const text = yield* request.text
          const response = yield* Effect.promise((signal) =>
            pool.request({
              path: "/v1/chat/completions",
              method: "POST",
              headers: { "content-type": "application/json" },
              body: text,
              signal
            })
          )
          if (piped) return HttpServerResponse.raw(response.body, { contentType: "text/event-stream" })
          return HttpServerResponse.stream(
            NodeStream.fromReadable(
              () => response.body,
              (e) => e
            ),
            { contentType: "text/event-stream" }
          )
        }).pipe(Effect.orDie)
      )
    )
    const context = yield* Layer.build(
      HttpServer.serve(router).pipe(
        Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 }))
      )
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    return { url: address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : "" }
  })

const main = Effect.gen(function* () {
  const { connections, delayMs, paths, seconds, tokens } = yield* settings
  const selected = new Set(paths.split(",").map((p) => p.trim()))
  const up = yield* Upstream.start({ tokens, delayMs })
  const config = yield* Effect.withConfigProvider(
    relayConfig,
    ConfigProvider.fromMap(
      new Map([
        ["MAX_CONNECTIONS", String(connections + 100)],
        ["MAX_KEEPALIVE_CONNECTIONS", String(connections + 100)],
        ["MAX_CONCURRENT_REQUESTS", String(connections * 2)],
        ["POOL_TIMEOUT_SECONDS", "30"],
        // The run measures the hot path: connects timing out on an overloaded machine must not open an
        // account's circuit in the middle of it.
        ["BREAKER_FAILURES", "1000000"]
      ])
    )
  )
  const relay = yield* listen(
    { upstream: up.url, config, adminToken: Redacted.make("bench-admin-token-0123456789") },
    0
  )
  const plain = yield* plainRelay(up.url, connections + 100)
  const bare = yield* effectRelay(up.url, connections + 100)
  const piped = yield* effectRelay(up.url, connections + 100, true)
  const targets = [
    { id: "cistern", name: "cistern relay", url: relay.url },
    { id: "effect", name: "effect relay (no Cistern)", url: bare.url },
    { id: "effect-piped", name: "effect relay, piped (no Cistern)", url: piped.url },
    { id: "undici", name: "undici relay (no Effect)", url: plain.url },
    { id: "direct", name: "direct (no relay)", url: up.url }
  ].filter((t) => selected.has(t.id))
  yield* Console.log(
    `load: ${connections} connections × ${seconds} s each; upstream: ${tokens} tokens, one every ${delayMs} ms`
  )

  // A warm-up of each path at full concurrency, one request per connection, none cut: every path's
  // upstream connections are open (and idle) and its code compiled before it is measured. (A warm-up
  // cut by a deadline would leave none: a connection cut mid-body is destroyed.)
  for (const target of targets) yield* load("warm-up", target.url, up, connections, 0, connections)

  const health = (): Promise<{
    pool: { inUse: number; idle: number; waiting: number }
    accounts: Record<string, string>
  }> =>
    new Promise((resolve, reject) =>
      Http.get(`${relay.url}/healthz`, (res) => {
        let text = ""
        res.on("data", (c) => {
          text += c
        })
        res.on("end", () => resolve(JSON.parse(text)))
      }).on("error", reject)
    )
  const rows: Array<Row> = []
  let leaks = ""
  for (const target of targets) {
    rows.push(yield* load(target.name, target.url, up, connections, seconds))
    if (target.id !== "cistern") continue
    // Leases still held once the clients are gone, after a bounded settle.
    let after = yield* Effect.promise(health)
    for (let i = 0; i < 50 && (after.pool.inUse > 0 || after.pool.waiting > 0); i++) {
      yield* Effect.sleep(Duration.millis(100))
      after = yield* Effect.promise(health)
    }
    if (process.env.BENCH_VERBOSE) yield* Console.log(JSON.stringify(after))
    leaks = `leaked leases after the Cistern run: ${after.pool.inUse} (pool idle ${after.pool.idle}, waiting ${after.pool.waiting})`
  }

  const direct = rows.find((r) => r.name === "direct (no relay)")
  yield* Console.log(
    [
      "| path | requests | req/s | p50 ms | p99 ms | tokens/s | errors | non-2xx | CPU µs/req | p50 vs direct |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...rows.map(
        (r) =>
          `| ${r.name} | ${r.requests} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.tokensPerSecond} | ${r.errors} | ${r.non2xx} | ${r.cpuMicros} | ${direct === undefined ? "–" : `${(r.p50 / direct.p50).toFixed(2)}×`} |`
      )
    ].join("\n")
  )
  if (leaks !== "") yield* Console.log(leaks)
  yield* Console.log(`upstream sockets open now: ${up.openSockets()}`)
})

main.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), NodeRuntime.runMain)
