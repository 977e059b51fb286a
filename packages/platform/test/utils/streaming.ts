/**
 * Real sockets for the streaming tests: an SSE upstream on 127.0.0.1 that
 * counts its open sockets, upstream connections as one-socket `http.Agent`s
 * (so a pool item is exactly one TCP connection), a relay built on
 * `StreamLease`, and downstream clients that read, abort and time out.
 */

import * as Http from "node:http"
import type * as Net from "node:net"
import type { KeyedPool } from "@cistern/pool"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Data, Effect, Layer, type Scope, Stream } from "effect"
import { StreamLease } from "../../src/index.js"

export type Mode = "ok" | "fail" | "hang" | "reset"

export interface Upstream {
  readonly port: number
  /** Sockets open on the upstream's side now. */
  readonly open: () => number
  /** Connections accepted so far. */
  readonly accepted: () => number
}

/**
 * `POST /stream?tokens=N&delay=ms&mode=ok|fail|hang|reset&at=K`: `N` SSE
 * events `data: tok-<i>`, one every `delay` ms, then `data: [DONE]`; at token
 * `K` a `fail` destroys the socket, a `reset` sends a TCP RST, a `hang` stops
 * writing.
 */
export const upstream: Effect.Effect<Upstream, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ readonly server: Http.Server; readonly upstream: Upstream }>((resume) => {
    const sockets = new Set<Net.Socket>()
    let accepted = 0
    const server = Http.createServer({ keepAlive: true, keepAliveTimeout: 60_000 }, (req, res) => {
      const url = new URL(req.url ?? "/", "http://upstream")
      const tokens = Number(url.searchParams.get("tokens") ?? 5)
      const delay = Number(url.searchParams.get("delay") ?? 1)
      const mode = (url.searchParams.get("mode") ?? "ok") as Mode
      const at = Number(url.searchParams.get("at") ?? Math.floor(tokens / 2))
      req.resume()
      res.writeHead(200, { "content-type": "text/event-stream" })
      let i = 0
      const timer = setInterval(() => {
        if (i === at && mode !== "ok") {
          clearInterval(timer)
          if (mode === "fail") res.socket?.destroy()
          if (mode === "reset") res.socket?.resetAndDestroy()
          return
        }
        if (i === tokens) {
          clearInterval(timer)
          res.end("data: [DONE]\n\n")
          return
        }
        res.write(`data: tok-${i++}\n\n`)
      }, delay)
      res.on("close", () => clearInterval(timer))
    })
    server.on("connection", (socket) => {
      socket.setNoDelay(true)
      accepted++
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as Net.AddressInfo
      resume(
        Effect.succeed({
          server,
          upstream: { port: address.port, open: () => sockets.size, accepted: () => accepted }
        })
      )
    })
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ upstream }) => upstream))

export class UpstreamError extends Data.TaggedError("UpstreamError")<{ readonly reason: string }> {}

/** One upstream connection: an agent that keeps at most one socket alive. */
export interface Connection {
  readonly id: number
  readonly agent: Http.Agent
}

let serial = 0

export const connect: Effect.Effect<Connection, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => ({ id: ++serial, agent: new Http.Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 }) })),
  (connection) => Effect.sync(() => connection.agent.destroy())
)

/** A body as a stream that fails when the upstream cuts it short. */
const body = (res: Http.IncomingMessage): Stream.Stream<Uint8Array, UpstreamError> =>
  Stream.async<Uint8Array, UpstreamError>((emit) => {
    res.on("data", (chunk: Buffer) => emit.single(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)))
    res.on("end", () => emit.end())
    res.on("error", (error) => emit.fail(new UpstreamError({ reason: error.message })))
    res.on("close", () => {
      if (!res.complete) emit.fail(new UpstreamError({ reason: "the upstream closed the response early" }))
    })
  })

/**
 * Sends `POST <path>` on `connection`; in the caller's scope, whose closing
 * aborts a request that has not completed.
 */
export const send = (
  connection: Connection,
  port: number,
  path: string
): Effect.Effect<Stream.Stream<Uint8Array, UpstreamError>, UpstreamError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly req: Http.ClientRequest; readonly res: Http.IncomingMessage }, UpstreamError>((resume) => {
      const req = Http.request(
        { host: "127.0.0.1", port, path, method: "POST", agent: connection.agent, headers: { "content-length": 0 } },
        (res) => resume(Effect.succeed({ req, res }))
      )
      req.on("error", (error) => resume(Effect.fail(new UpstreamError({ reason: error.message }))))
      req.setNoDelay(true)
      req.end()
      return Effect.sync(() => req.destroy())
    }),
    ({ req, res }) =>
      Effect.sync(() => {
        if (!res.complete) req.destroy()
      })
  ).pipe(Effect.map(({ res }) => body(res)))

export type Pool = KeyedPool.KeyedPool<string, Connection>

export class Relay extends Context.Tag("test/Relay")<Relay, { readonly port: number }>() {}

/**
 * A relay on 127.0.0.1: `POST /chat?<upstream query>[&max=<ms>]` streams the
 * upstream's body through `StreamLease.respond`, with `options`.
 */
export const relay = (
  pool: Pool,
  up: Upstream,
  options: StreamLease.Options = {}
): Effect.Effect<{ readonly port: number }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const router = HttpRouter.empty.pipe(
      HttpRouter.post(
        "/chat",
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const query = request.url.includes("?") ? request.url.slice(request.url.indexOf("?")) : ""
          // `max=<ms>` sets this route's maximum duration, over the relay's default.
          const max = new URLSearchParams(query).get("max")
          const route = max === null ? options : { ...options, maxDuration: Number(max) }
          return yield* StreamLease.respond(pool, "upstream", (c) => send(c, up.port, `/stream${query}`), route)
        }).pipe(
          Effect.catchAll((error) =>
            HttpServerResponse.json({ error: error._tag }, { status: error._tag === "StreamTimeout" ? 504 : 502 })
          ),
          Effect.orDie
        )
      )
    )
    return yield* listen(HttpServer.serve(router))
  })

/** Serves `app` on 127.0.0.1 and a free port, in the current scope. */
export const listen = <E>(
  serve: Layer.Layer<never, E, HttpServer.HttpServer>
): Effect.Effect<{ readonly port: number }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const layer = serve.pipe(
      Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 }))
    )
    const context = yield* Layer.build(layer).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    return { port: address.port }
  })

export interface Reply {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
  /** The response ended cleanly (not cut). */
  readonly complete: boolean
}

/**
 * `POST` from a fresh connection. With `abortAfterChunks`, the client destroys
 * its socket once it has read that many chunks (a browser tab closed). An
 * aborted `signal` (the test interrupted: `Effect.promise`'s) destroys it too,
 * so a test cut short does not leave requests the servers' shutdown waits for.
 */
export const post = (port: number, path: string, abortAfterChunks?: number, signal?: AbortSignal): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const req = Http.request(
      { host: "127.0.0.1", port, path, method: "POST", agent: false, headers: { "content-length": 0 } },
      (res) => {
        let body = ""
        let chunks = 0
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          body += chunk
          if (abortAfterChunks !== undefined && ++chunks >= abortAfterChunks) {
            req.destroy()
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: false })
          }
        })
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: true }))
        res.on("error", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: false }))
        res.on("close", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: res.complete })
        )
      }
    )
    req.on("error", reject)
    signal?.addEventListener("abort", () => req.destroy(), { once: true })
    req.end()
  })

/** Polls `condition` on the real clock (I/O settling, not a timing rule), failing after `millis`. */
export const eventually = <E, R>(
  condition: Effect.Effect<boolean, E, R>,
  millis = 5_000
): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function* () {
    const deadline = performance.now() + millis
    while (!(yield* condition)) {
      if (performance.now() > deadline) return yield* Effect.fail(new Error(`condition not met within ${millis} ms`))
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
    }
  })

/** The tokens of an SSE body, in order. */
export const tokens = (body: string): ReadonlyArray<string> =>
  body
    .split("\n\n")
    .filter((event) => event.startsWith("data: tok-"))
    .map((event) => event.slice("data: ".length))

/** A request whose client can go away mid-wait: `destroy()` closes its socket. */
export const start = (
  port: number,
  path: string,
  method = "GET"
): { readonly reply: Promise<Reply>; readonly destroy: () => void } => {
  let request: Http.ClientRequest | undefined
  // Never rejects: a client that went away (or was turned away) reads as status 0.
  const reply = new Promise<Reply>((resolve) => {
    const req = Http.request(
      { host: "127.0.0.1", port, path, method, agent: false, headers: { "content-length": 0 } },
      (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => {
          body += chunk
        })
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: true }))
      }
    )
    req.on("error", () => resolve({ status: 0, headers: {}, body: "", complete: false }))
    req.end()
    request = req
  })
  return { reply, destroy: () => request?.destroy() }
}
