import * as Http from "node:http"
import { HttpRouter, HttpServer, HttpServerRequest } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, TestClock } from "effect"
import { UpstreamPool, UpstreamRelay } from "../src/index.js"
import { eventually, upstream } from "./utils/servers.js"

/** A server on 127.0.0.1 relaying `GET <path>` to the upstream's `<path>` over the pool, in the current scope. */
const relayServer = (upstreamUrl: string, options: UpstreamRelay.Options = {}) =>
  Effect.gen(function* () {
    const pool = yield* UpstreamPool.make({ maxPerKey: 4, maxTotal: 4 })
    const key = UpstreamPool.key(upstreamUrl)
    const endings: Array<UpstreamRelay.Ending> = []
    const app = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      return yield* UpstreamRelay.respond(
        pool,
        key,
        { method: "GET", path: request.url },
        { ...options, onEnd: (ending) => Effect.sync(() => endings.push(ending)) }
      )
    }).pipe(Effect.orDie)
    const context = yield* Layer.build(
      HttpServer.serve(HttpRouter.empty.pipe(HttpRouter.get("*", app))).pipe(
        Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 }))
      )
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    return { pool, endings, port }
  })

interface Reply {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/** Reads a whole response; `cutAfter`: destroys the socket once that many bytes arrived. */
const get = (port: number, path: string, cutAfter?: number) =>
  Effect.async<Reply>((resume) => {
    const request = Http.get({ host: "127.0.0.1", port, path, agent: false }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (part: string) => {
        body += part
        if (cutAfter !== undefined && body.length >= cutAfter) {
          request.destroy()
          resume(Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, body }))
        }
      })
      response.on("end", () =>
        resume(Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, body }))
      )
    })
    request.on("error", () => {})
  })

describe("UpstreamRelay", () => {
  it.scoped("relays a whole body, then the connection goes back to the pool and is reused", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { pool, endings, port } = yield* relayServer(server.url, { format: "chunked" })
      const first = yield* get(port, "/hello")
      assert.strictEqual(first.status, 200)
      assert.strictEqual(first.body, "hello")
      // 4 MiB: more than the sockets' buffers, so the upstream is paused and resumed on the way.
      const big = yield* get(port, "/big")
      assert.strictEqual(big.body.length, 4 * 1024 * 1024)
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.idle === 1 && s.inUse === 0,
        "idle again"
      )
      const stats = yield* pool.stats
      assert.strictEqual(stats.created, 1, "one connection for both")
      assert.strictEqual(stats.destroyed, 0)
      assert.strictEqual(server.accepted(), 1)
      assert.deepStrictEqual(endings, ["completed", "completed"])
    })
  )

  it.scoped("passes another status on as it is, and keeps the connection", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { pool, port } = yield* relayServer(server.url)
      const reply = yield* get(port, "/status/503")
      assert.strictEqual(reply.status, 503)
      assert.strictEqual(reply.body, "status")
      assert.notStrictEqual(reply.headers["content-type"], "text/event-stream")
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.idle === 1 && s.destroyed === 0,
        "kept"
      )
    })
  )

  it.scoped("a client that goes away mid-body ends the lease and the upstream connection is destroyed", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { endings, pool, port } = yield* relayServer(server.url)
      const reply = yield* get(port, "/stream", 1)
      assert.strictEqual(reply.headers["content-type"], "text/event-stream")
      assert.include(reply.body, "data: 0")
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.inUse === 0 && s.destroyed === 1,
        "released"
      )
      yield* eventually(
        () => server.open(),
        (open) => open === 0,
        "upstream socket closed"
      )
      assert.deepStrictEqual(endings, ["interrupted"])
    })
  )

  it.scoped(
    "past maxDuration the body ends with an SSE error event, on the Clock, and the connection is destroyed",
    () =>
      Effect.gen(function* () {
        const server = yield* upstream()
        const { endings, pool, port } = yield* relayServer(server.url, { maxDuration: "10 seconds" })
        const fiber = yield* Effect.fork(get(port, "/stream"))
        yield* eventually(
          () => server.inFlight(),
          (n) => n === 1,
          "streaming"
        )
        yield* eventually(
          () => Effect.runSync(pool.stats),
          (s) => s.inUse === 1,
          "leased"
        )
        yield* TestClock.adjust("10 seconds")
        const reply = yield* fiber.await.pipe(Effect.flatten)
        assert.include(reply.body, "data: 0")
        assert.include(reply.body, "event: error")
        assert.include(reply.body, "stream_timeout")
        yield* eventually(
          () => Effect.runSync(pool.stats),
          (s) => s.inUse === 0 && s.destroyed === 1,
          "released"
        )
        yield* eventually(
          () => server.open(),
          (open) => open === 0,
          "upstream socket closed"
        )
        assert.deepStrictEqual(endings, ["timeout"])
      })
  )

  it.scoped("an upstream that resets mid-body: an SSE error event ends the body, the connection is destroyed", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { endings, pool, port } = yield* relayServer(server.url)
      const reply = yield* get(port, "/reset")
      assert.include(reply.body, "event: error")
      assert.include(reply.body, "upstream_error")
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.inUse === 0 && s.destroyed === 1,
        "destroyed"
      )
      assert.deepStrictEqual(endings, ["failed"])
    })
  )
})
