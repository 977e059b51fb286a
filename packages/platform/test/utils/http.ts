/**
 * A real admin server on 127.0.0.1 (port 0), and two real clients: a raw
 * HTTP/1.1 client over `node:net` that returns the response's exact bytes,
 * and the typed `HttpApiClient` derived from `AdminApi`.
 */

import * as Http from "node:http"
import * as Net from "node:net"
import { PoolRegistry } from "@cistern/pool"
import { HttpApiClient, HttpClient, HttpClientRequest, HttpServer } from "@effect/platform"
import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import { Context, Deferred, Effect, Exit, Layer, Queue, type Redacted, type Scope } from "effect"
import { AdminApi, AdminAuth, AdminDashboard, AdminHttp } from "../../src/index.js"

export interface Server {
  readonly port: number
  readonly url: string
  /** The dashboard's sampler the server runs. */
  readonly dashboard: AdminDashboard.Service
}

/**
 * Serves the standalone admin API from `registry`, in the current scope, with
 * the context's logger and clock.
 */
export const serve = (
  registry: PoolRegistry.PoolRegistry["Type"],
  options: {
    readonly token: Redacted.Redacted<string>
    readonly publicHealth?: boolean
    readonly dashboard?: AdminDashboard.Options
  }
): Effect.Effect<Server, never, Scope.Scope> =>
  Effect.gen(function* () {
    const layer = AdminHttp.layerServer({ dashboard: options.dashboard }).pipe(
      Layer.provide(AdminAuth.layer(options)),
      Layer.provide(Layer.succeed(PoolRegistry.PoolRegistry, registry)),
      Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 }))
    )
    const context = yield* Layer.build(layer).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    return {
      port: address.port,
      url: `http://127.0.0.1:${address.port}`,
      dashboard: Context.get(context, AdminDashboard.Dashboard)
    }
  })

export interface RawRequest {
  readonly method?: string
  readonly path: string
  readonly headers?: Record<string, string>
  /** Header lines sent as they are, after `headers` (a header twice, say). */
  readonly headerLines?: ReadonlyArray<string>
  readonly body?: string
}

export interface RawResponse {
  /** Every byte the server sent. */
  readonly raw: Buffer
  readonly status: number
  /** Header lines as sent, `Date` excepted (it changes every second). */
  readonly headerLines: ReadonlyArray<string>
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

const dechunk = (body: Buffer): Buffer => {
  const parts: Array<Buffer> = []
  let at = 0
  for (;;) {
    const end = body.indexOf("\r\n", at)
    const size = Number.parseInt(body.subarray(at, end).toString("latin1"), 16)
    if (!Number.isFinite(size) || size === 0) break
    parts.push(body.subarray(end + 2, end + 2 + size))
    at = end + 2 + size + 2
  }
  return Buffer.concat(parts)
}

const parseResponse = (raw: Buffer): RawResponse => {
  const split = raw.indexOf("\r\n\r\n")
  const head = raw.subarray(0, split).toString("latin1").split("\r\n")
  const status = Number(head[0].split(" ")[1])
  const lines = head.slice(1)
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(":")
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  const rest = raw.subarray(split + 4)
  const body = headers["transfer-encoding"] === "chunked" ? dechunk(rest) : rest
  return {
    raw,
    status,
    headerLines: lines.filter((line) => !/^date:/i.test(line)),
    headers,
    body: body.toString("utf8")
  }
}

/** Sends one request on a fresh connection (`Connection: close`) and reads everything back. */
export const raw = (server: Pick<Server, "port">, request: RawRequest): Effect.Effect<RawResponse> =>
  Effect.async<RawResponse>((resume) => {
    const body = request.body ?? ""
    const headers = {
      host: `127.0.0.1:${server.port}`,
      connection: "close",
      ...(request.body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) }),
      ...request.headers
    }
    const head = [
      `${request.method ?? "GET"} ${request.path} HTTP/1.1`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ...(request.headerLines ?? [])
    ].join("\r\n")
    const chunks: Array<Buffer> = []
    const socket = Net.connect({ host: "127.0.0.1", port: server.port })
    // A safety net for a broken server, not a timing rule: no test waits for it.
    socket.setTimeout(10_000, () => socket.destroy(new Error("no answer within 10 s")))
    socket.on("connect", () => socket.write(`${head}\r\n\r\n${body}`))
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("error", (error) => resume(Effect.die(error)))
    socket.on("close", (hadError) => {
      if (!hadError) resume(Effect.succeed(parseResponse(Buffer.concat(chunks))))
    })
    return Effect.sync(() => socket.destroy())
  })

/** The typed client of `AdminApi`, sending `token` when given (provide {@link httpClient}). */
export const client = (server: Server, token?: Redacted.Redacted<string>) =>
  HttpApiClient.make(AdminApi.AdminApi, {
    baseUrl: server.url,
    transformClient: token === undefined ? undefined : HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  })

/** A real HTTP client (undici), closed with the test's scope. */
export const httpClient = NodeHttpClient.layerUndici

/** A connection that has sent a request head and maybe part of its body, and stays open until told. */
export interface OpenRequest {
  /** Sends more of the body; `false` once the server has closed the connection. */
  readonly write: (chunk: string | Buffer) => Effect.Effect<boolean>
  /** The first complete response (head, and a body as long as its `content-length`). */
  readonly response: Effect.Effect<RawResponse>
  /** Resolves when the connection is closed (by either side). */
  readonly closed: Effect.Effect<void>
}

const complete = (raw: Buffer): RawResponse | undefined => {
  const split = raw.indexOf("\r\n\r\n")
  if (split === -1) return undefined
  const length = /\r\ncontent-length: *(\d+)/i.exec(raw.subarray(0, split).toString("latin1"))
  if (length !== null && raw.length < split + 4 + Number(length[1])) return undefined
  return parseResponse(raw)
}

/**
 * Opens a connection, sends `head` (the request line and headers, without the
 * blank line that ends them) and `body`, and keeps the connection open: a
 * request whose body is announced but not (all) sent. Destroyed with the scope.
 */
export const openRequest = (
  server: Pick<Server, "port">,
  head: ReadonlyArray<string>,
  body: string | Buffer = ""
): Effect.Effect<OpenRequest, never, Scope.Scope> =>
  Effect.gen(function* () {
    const response = yield* Deferred.make<RawResponse>()
    const closed = yield* Deferred.make<void>()
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => Net.connect({ host: "127.0.0.1", port: server.port })),
      (socket) => Effect.sync(() => socket.destroy())
    )
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk) => {
      chunks.push(chunk)
      const parsed = complete(Buffer.concat(chunks))
      if (parsed !== undefined) Deferred.unsafeDone(response, Exit.succeed(parsed))
    })
    // A reset after the server closed is how a refused upload ends: not a test failure.
    socket.on("error", () => {})
    // A safety net for a broken server, not a timing rule: no test waits for it.
    socket.setTimeout(10_000, () => socket.destroy())
    socket.on("close", () => {
      // A connection closed before a complete response fails the wait instead of leaving it hanging.
      const received = Buffer.concat(chunks).toString("latin1").slice(0, 200)
      Deferred.unsafeDone(response, Exit.die(new Error(`closed before a complete response; received: ${received}`)))
      Deferred.unsafeDone(closed, Exit.void)
    })
    socket.write(`${head.join("\r\n")}\r\n\r\n`)
    if (body.length > 0) socket.write(body)
    return {
      write: (chunk) =>
        Effect.async<boolean>((resume) => {
          if (socket.destroyed || socket.writableEnded) return resume(Effect.succeed(false))
          socket.write(chunk, (error) => resume(Effect.succeed(error == null)))
        }),
      response: Deferred.await(response),
      closed: Deferred.await(closed)
    }
  })

/** One server-sent event. */
export interface SseEvent {
  readonly type: string
  readonly data: any
}

/** A raw client of an event stream: the response head, then its events as they arrive. */
export interface SseClient {
  readonly status: Effect.Effect<number>
  /** The next event not yet taken (waits for it). */
  readonly next: Effect.Effect<SseEvent>
  /** Events received and not yet taken. */
  readonly buffered: Effect.Effect<number>
  /** Stops reading from the socket (the server's writes then back up), or reads again. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /** Hangs up, as a closed browser tab does. */
  readonly close: Effect.Effect<void>
  /** Resolves when the connection is closed (by either side). */
  readonly closed: Effect.Effect<void>
}

/**
 * Opens `GET path` on a raw socket and parses the chunked server-sent-events
 * body as it comes. Destroyed with the scope.
 */
export const sse = (
  server: Pick<Server, "port">,
  path: string,
  headers: Record<string, string>
): Effect.Effect<SseClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const events = yield* Queue.unbounded<SseEvent>()
    const status = yield* Deferred.make<number>()
    const closed = yield* Deferred.make<void>()
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => Net.connect({ host: "127.0.0.1", port: server.port })),
      (socket) => Effect.sync(() => socket.destroy())
    )
    let raw = Buffer.alloc(0)
    let headDone = false
    let body = ""
    socket.on("data", (chunk: Buffer) => {
      raw = Buffer.concat([raw, chunk])
      if (!headDone) {
        const split = raw.indexOf("\r\n\r\n")
        if (split === -1) return
        headDone = true
        Deferred.unsafeDone(status, Exit.succeed(Number(raw.subarray(0, split).toString("latin1").split(" ")[1])))
        raw = raw.subarray(split + 4)
      }
      // chunked transfer coding: size line, data, CRLF
      for (;;) {
        const end = raw.indexOf("\r\n")
        if (end === -1) break
        const size = Number.parseInt(raw.subarray(0, end).toString("latin1"), 16)
        if (!Number.isFinite(size) || raw.length < end + 2 + size + 2) break
        body += raw.subarray(end + 2, end + 2 + size).toString("utf8")
        raw = raw.subarray(end + 2 + size + 2)
      }
      let split = body.indexOf("\n\n")
      while (split !== -1) {
        const block = body.slice(0, split)
        body = body.slice(split + 2)
        let type = "message"
        let data = ""
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) type = line.slice(7)
          else if (line.startsWith("data: ")) data += line.slice(6)
        }
        Queue.unsafeOffer(events, { type, data: data === "" ? undefined : JSON.parse(data) })
        split = body.indexOf("\n\n")
      }
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      Deferred.unsafeDone(status, Exit.succeed(0))
      Deferred.unsafeDone(closed, Exit.void)
    })
    const head = [
      `GET ${path} HTTP/1.1`,
      `host: 127.0.0.1:${server.port}`,
      "accept: text/event-stream",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)
    ]
    socket.write(`${head.join("\r\n")}\r\n\r\n`)
    return {
      status: Deferred.await(status),
      next: Queue.take(events),
      buffered: Queue.size(events),
      pause: Effect.sync(() => {
        socket.pause()
      }),
      resume: Effect.sync(() => {
        socket.resume()
      }),
      close: Effect.sync(() => {
        socket.destroy()
      }),
      closed: Deferred.await(closed)
    }
  })

/** Waits, in real time (I/O is not driven by the test clock), until `condition` holds; at most 5 seconds. */
export const eventually = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  condition: (a: A) => boolean
): Effect.Effect<A, E | string, R> =>
  Effect.gen(function* () {
    for (let i = 0; i < 500; i++) {
      const value = yield* effect
      if (condition(value)) return value
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
    }
    return yield* Effect.fail("the condition did not hold within 5 seconds")
  })
