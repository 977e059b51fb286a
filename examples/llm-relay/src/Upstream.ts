/**
 * A stand-in for an LLM provider: an HTTP server on 127.0.0.1 that answers
 * OpenAI-style `POST /v1/chat/completions` with `stream: true` by sending
 * `chat.completion.chunk` events slowly, then `data: [DONE]`.
 *
 * Switches, per request (headers) or for the whole server (options):
 * - `x-upstream-mode: ok | fail | hang | reset | drop`: `fail` closes the
 *   socket mid-stream, `reset` sends a TCP RST mid-stream, `hang` stops
 *   writing, `drop` closes the socket before answering at all (an account
 *   whose upstream is failing: the relay sees a connection error);
 * - `x-upstream-tokens`, `x-upstream-delay-ms`: how many tokens, how slowly.
 *
 * It counts the sockets open on its side, so a test or a load run can tell
 * whether the relay left connections behind, and the requests of each
 * account (by the bearer key the relay sends), so affinity can be watched.
 */

import * as Http from "node:http"
import type * as Net from "node:net"
import { Effect, type Scope } from "effect"

export type Mode = "ok" | "fail" | "hang" | "reset" | "drop"

export interface UpstreamOptions {
  /** Tokens per completion. Default 20. */
  readonly tokens?: number | undefined
  /** Milliseconds between tokens. Default 20. */
  readonly delayMs?: number | undefined
  /** Chances (0–1) that a request fails, hangs or resets mid-stream, when its request does not say. */
  readonly failRate?: number | undefined
  readonly hangRate?: number | undefined
  readonly resetRate?: number | undefined
}

export interface Upstream {
  readonly url: string
  readonly port: number
  /** Sockets open on the upstream's side now. */
  readonly openSockets: () => number
  /** Connections accepted so far. */
  readonly accepted: () => number
  /** Tokens written so far. */
  readonly tokensSent: () => number
  /** Completions sent whole (up to `data: [DONE]`) so far. */
  readonly completed: () => number
  /** Requests received so far per account: the bearer key of `Authorization` (`""` for none). */
  readonly requestsByKey: () => ReadonlyMap<string, number>
}

/** The text of token `i`: what a client must receive, in order and once. */
export const token = (i: number): string => `tok${i} `

const chunk = (id: string, i: number) =>
  `data: ${JSON.stringify({
    id,
    object: "chat.completion.chunk",
    model: "relay-demo",
    choices: [{ index: 0, delta: { content: token(i) }, finish_reason: null }]
  })}\n\n`

const pickMode = (options: UpstreamOptions): Mode => {
  const r = Math.random()
  const fail = options.failRate ?? 0
  const hang = options.hangRate ?? 0
  const reset = options.resetRate ?? 0
  return r < fail ? "fail" : r < fail + hang ? "hang" : r < fail + hang + reset ? "reset" : "ok"
}

const header = (req: Http.IncomingMessage, name: string) => {
  const value = req.headers[name]
  return typeof value === "string" ? value : undefined
}

/** Starts the upstream on 127.0.0.1 and a free port (or `port`), for the current scope. */
export const start = (options: UpstreamOptions = {}, port = 0): Effect.Effect<Upstream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: Http.Server; readonly upstream: Upstream }>((resume) => {
      const sockets = new Set<Net.Socket>()
      let accepted = 0
      let sent = 0
      let completed = 0
      let serial = 0
      const byKey = new Map<string, number>()
      const server = Http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
        if (req.method !== "POST" || !req.url?.startsWith("/v1/chat/completions")) {
          res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}')
          return
        }
        const tokens = Number(header(req, "x-upstream-tokens") ?? options.tokens ?? 20)
        const delay = Number(header(req, "x-upstream-delay-ms") ?? options.delayMs ?? 20)
        const mode = (header(req, "x-upstream-mode") as Mode | undefined) ?? pickMode(options)
        const cutAt = Math.max(1, Math.floor(tokens / 2))
        const id = `chatcmpl-${++serial}`
        const bearer = /^Bearer (.+)$/i.exec(header(req, "authorization") ?? "")?.[1] ?? ""
        byKey.set(bearer, (byKey.get(bearer) ?? 0) + 1)
        req.resume()
        req.on("end", () => {
          if (mode === "drop") {
            res.socket?.destroy()
            return
          }
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
          let i = 0
          const timer = setInterval(() => {
            if (i === cutAt && mode !== "ok") {
              clearInterval(timer)
              if (mode === "fail") res.socket?.destroy()
              if (mode === "reset") res.socket?.resetAndDestroy()
              return
            }
            if (i === tokens) {
              clearInterval(timer)
              completed++
              res.end("data: [DONE]\n\n")
              return
            }
            sent++
            res.write(chunk(id, i++))
          }, delay)
          res.on("close", () => clearInterval(timer))
        })
      })
      server.on("connection", (socket) => {
        // Small SSE writes must not wait for the peer's delayed ACK.
        socket.setNoDelay(true)
        accepted++
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
      })
      server.listen(port, "127.0.0.1", () => {
        const address = server.address() as Net.AddressInfo
        resume(
          Effect.succeed({
            server,
            upstream: {
              url: `http://127.0.0.1:${address.port}`,
              port: address.port,
              openSockets: () => sockets.size,
              accepted: () => accepted,
              tokensSent: () => sent,
              completed: () => completed,
              requestsByKey: () => new Map(byKey)
            }
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
