/**
 * One relay of the benchmark in a process of its own. Arguments: which one,
 * the upstream's URL, and the load's connection count. Ready with its URL;
 * `cpu` answers this process's CPU time so far (microseconds).
 *
 * - `cistern`: this example's relay (pooled connections, `UpstreamRelay`,
 *   ConcurrencyLimit, sessions, breaker, admin API);
 * - `effect`: the same hop as a bare `@effect/platform` route (undici
 *   `Pool`, `NodeStream.fromReadable`, `HttpServerResponse.stream`), no Cistern;
 * - `effect-piped`: the same bare route answering with the undici body as a
 *   raw Node stream the server pipes (the Effect HTTP server's own floor);
 * - `undici`: the same hop with a plain undici `Pool` and `node:http`, no Effect.
 */

import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Inspector from "node:inspector"
import * as Path from "node:path"
import { HttpRouter, HttpServer, HttpServerRequest } from "@effect/platform"
import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
import { ConfigProvider, Context, Effect, Layer, Logger, LogLevel, Redacted } from "effect"
import { Pool } from "undici"
import { listen, relayConfig } from "../Relay.js"
import { cpuMicros, serve } from "./processes.js"
import { sseResponse } from "./sse.js"

/** The relays this process can run. */
export type Kind = "cistern" | "effect" | "effect-piped" | "undici"

/** This example's relay, with limits sized for the load. */
const cisternRelay = (upstream: string, connections: number) =>
  Effect.gen(function* () {
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
    const relay = yield* listen({ upstream, config, adminToken: Redacted.make("bench-admin-token-0123456789") }, 0)
    return { url: relay.url }
  })

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
const effectRelay = (upstream: string, connections: number, piped: boolean) =>
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
          return sseResponse(response.body, piped)
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

const start = (kind: Kind, upstream: string, connections: number) => {
  switch (kind) {
    case "cistern":
      return cisternRelay(upstream, connections)
    case "effect":
      return effectRelay(upstream, connections + 100, false)
    case "effect-piped":
      return effectRelay(upstream, connections + 100, true)
    case "undici":
      return plainRelay(upstream, connections + 100)
  }
}

/**
 * A CPU profile of the measured run only (not of start-up and warm-up):
 * `profileStart` and `profileStop` around it write `<dir>/<kind>.cpuprofile`.
 */
const profiler = (kind: string, dir: string | undefined) => {
  const session = new Inspector.Session()
  const post = (method: string, params?: object) =>
    Effect.async<any, Error>((resume) =>
      session.post(method, params, (error, result) =>
        resume(error === null ? Effect.succeed(result) : Effect.fail(error))
      )
    )
  return {
    profileStart: () =>
      dir === undefined
        ? Effect.void
        : Effect.zipRight(
            Effect.sync(() => session.connect()),
            Effect.zipRight(post("Profiler.enable"), post("Profiler.start"))
          ),
    profileStop: () =>
      dir === undefined
        ? Effect.succeed(null)
        : Effect.map(post("Profiler.stop"), ({ profile }) => {
            const file = Path.join(dir, `${kind}.cpuprofile`)
            Fs.mkdirSync(dir, { recursive: true })
            Fs.writeFileSync(file, JSON.stringify(profile))
            session.disconnect()
            return file
          })
  }
}

const [kind, upstream, connections, profileDir] = process.argv.slice(2)

Effect.gen(function* () {
  const relay = yield* start(kind as Kind, upstream!, Number(connections))
  return yield* serve(
    { url: relay.url },
    {
      cpu: () => Effect.sync(cpuMicros),
      ...profiler(kind!, profileDir === "" ? undefined : profileDir)
    }
  )
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning), NodeRuntime.runMain)
