/**
 * Real servers on 127.0.0.1 for the tests, each started and stopped in a
 * `Scope`: an upstream HTTP server that counts its sockets and requests, and
 * a small HTTP CONNECT proxy that records what it tunnels.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import * as net from "node:net"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as TestServices from "effect/TestServices"

export interface Upstream {
  readonly port: number
  readonly url: string
  /** Sockets open now, as the server sees them. */
  readonly open: () => number
  /** The most sockets open at once since the last `resetCounts`, as the kernel counts them (see `established`). */
  readonly maxOpen: () => number
  /** Sockets accepted since the last `resetCounts`. */
  readonly accepted: () => number
  /** Requests being answered now, and the most at once. */
  readonly inFlight: () => number
  readonly maxInFlight: () => number
  /** Requests served (whole responses sent). */
  readonly served: () => number
  /** Remote ports of the sockets accepted, in order. */
  readonly remotePorts: () => ReadonlyArray<number>
  readonly resetCounts: () => void
  /** Destroys every open socket from the server's side (an upstream restart, its idle timeout). */
  readonly dropAll: () => void
}

const hasProcNet = fs.existsSync("/proc/net/tcp")

/**
 * Server-side sockets of `port` the kernel holds ESTABLISHED: a socket its
 * client has closed is CLOSE_WAIT at once, whenever the server's event loop
 * gets to read the FIN. Read from Linux's `/proc/net/tcp` (loopback is IPv4);
 * `undefined` elsewhere, where the servers count the sockets Node has seen close.
 */
export const established = (ports: ReadonlyArray<number>): number | undefined => {
  if (!hasProcNet) return undefined
  let count = 0
  const lines = fs.readFileSync("/proc/net/tcp", "utf8").split("\n")
  for (let i = 1; i < lines.length; i++) {
    const fields = lines[i].trim().split(/\s+/)
    if (fields.length < 4 || fields[3] !== "01") continue
    if (ports.includes(Number.parseInt(fields[1].split(":")[1], 16))) count++
  }
  return count
}

/** Counts sockets open on several servers at once (the pool's total across upstreams). */
export class Tally {
  readonly ports: Array<number> = []
  open = 0
  max = 0
  inFlight = 0
  maxInFlight = 0
  reset(): void {
    this.max = this.open
    this.maxInFlight = this.inFlight
  }
}

/**
 * The upstream's routes:
 * - `/hello` answers "hello" at once;
 * - `/slow?ms=N` answers "slow" after N ms (server-side work, not a test timing);
 * - `/stream` sends a chunk every 20 ms until the client goes away;
 * - `/big` sends 4 MiB (more than undici buffers for an unread body);
 * - `/reset` sends headers and half its declared body, then resets the socket;
 * - `/close` answers with `Connection: close`;
 * - `/echo` answers with the request's body;
 * - `/drop-first` closes the connection of its first request without answering, then answers "ok";
 * - `/status/N` answers with status N.
 */
/** A self-signed certificate for 127.0.0.1 and localhost (test use only), and its key. */
export const loopbackTls = {
  cert: fs.readFileSync(new URL("../fixtures/loopback.crt", import.meta.url)),
  key: fs.readFileSync(new URL("../fixtures/loopback.key", import.meta.url))
}

export const upstream = (options?: {
  readonly tally?: Tally
  /** Serve HTTPS with this certificate and key. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer }
}): Effect.Effect<Upstream, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; front: net.Server; upstream: Upstream }>((resume) => {
      const tally = options?.tally
      const sockets = new Set<net.Socket>()
      let maxOpen = 0
      let accepted = 0
      let inFlight = 0
      let maxInFlight = 0
      let served = 0
      let ports: Array<number> = []
      let dropped = 0
      const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        if (tally !== undefined) {
          tally.inFlight++
          tally.maxInFlight = Math.max(tally.maxInFlight, tally.inFlight)
        }
        let done = false
        const finish = () => {
          if (done) return
          done = true
          inFlight--
          if (tally !== undefined) tally.inFlight--
        }
        res.once("finish", () => {
          served++
          finish()
        })
        res.once("close", finish)
        const url = new URL(req.url ?? "/", "http://localhost")
        if (url.pathname === "/echo") {
          const parts: Array<Buffer> = []
          req.on("data", (part: Buffer) => parts.push(part))
          req.on("end", () => res.end(Buffer.concat(parts)))
          return
        }
        req.resume()
        if (url.pathname === "/hello") {
          res.end("hello")
        } else if (url.pathname === "/slow") {
          const timer = setTimeout(() => res.end("slow"), Number(url.searchParams.get("ms") ?? "10"))
          res.once("close", () => clearTimeout(timer))
        } else if (url.pathname === "/stream") {
          res.writeHead(200, { "content-type": "text/event-stream" })
          let n = 0
          const timer = setInterval(() => res.write(`data: ${n++}\n\n`), 20)
          res.write(`data: ${n++}\n\n`)
          res.once("close", () => clearInterval(timer))
        } else if (url.pathname === "/big") {
          res.writeHead(200, { "content-length": String(4 * 1024 * 1024) })
          res.end(Buffer.alloc(4 * 1024 * 1024, 97))
        } else if (url.pathname === "/reset") {
          res.writeHead(200, { "content-length": "1000" })
          // Reset once the half body has passed the front, so the client has it before the reset.
          res.write(Buffer.alloc(500, 98), () => {
            setTimeout(() => req.socket.resetAndDestroy(), 20)
          })
        } else if (url.pathname === "/drop-first") {
          // The first request of this path loses its connection before any answer.
          if (dropped++ === 0) req.socket.destroy()
          else res.end("ok")
        } else if (url.pathname === "/close") {
          res.writeHead(200, { connection: "close" })
          res.end("bye")
        } else if (url.pathname.startsWith("/status/")) {
          res.statusCode = Number(url.pathname.slice("/status/".length))
          res.end("status")
        } else {
          res.statusCode = 404
          res.end()
        }
      }
      const server: http.Server =
        options?.tls === undefined ? http.createServer(handler) : https.createServer(options.tls, handler)
      const scheme = options?.tls === undefined ? "http" : "https"
      // Idle sockets stay open until the client closes them: the pool decides, not the server.
      server.keepAliveTimeout = 0
      // "connection" is the TCP socket, before any TLS: counted the same for both schemes.
      // Sockets are counted by a transparent TCP front that always reads: it sees a client's FIN (or RST)
      // at once, even while the HTTP server behind it has paused that connection mid-request.
      const front = net.createServer((socket) => {
        sockets.add(socket)
        accepted++
        ports.push(socket.remotePort ?? 0)
        if (tally !== undefined) tally.open++
        // The most open at once, as the kernel sees them when a new one arrives.
        const port = (front.address() as net.AddressInfo).port
        maxOpen = Math.max(maxOpen, established([port]) ?? sockets.size)
        if (tally !== undefined) tally.max = Math.max(tally.max, established(tally.ports) ?? tally.open)
        let closed = false
        const gone = () => {
          if (closed) return
          closed = true
          sockets.delete(socket)
          if (tally !== undefined) tally.open--
        }
        socket.once("end", gone)
        socket.once("error", gone)
        socket.once("close", gone)
        const back = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1")
        socket.pipe(back)
        back.pipe(socket)
        socket.on("error", () => back.destroy())
        socket.once("close", () => back.destroy())
        // The server closed or reset its side: so does the front, and the socket is gone from then on.
        back.on("error", () => {
          gone()
          socket.resetAndDestroy()
        })
        back.once("close", () => {
          gone()
          socket.destroy()
        })
      })
      server.listen(0, "127.0.0.1", () =>
        front.listen(0, "127.0.0.1", () => {
          const port = (front.address() as net.AddressInfo).port
          tally?.ports.push(port)
          resume(
            Effect.succeed({
              server,
              front,
              upstream: {
                port,
                url: `${scheme}://127.0.0.1:${port}`,
                open: () => sockets.size,
                maxOpen: () => maxOpen,
                accepted: () => accepted,
                inFlight: () => inFlight,
                maxInFlight: () => maxInFlight,
                served: () => served,
                remotePorts: () => ports,
                dropAll: () => {
                  for (const socket of sockets) socket.destroy()
                },
                resetCounts: () => {
                  maxOpen = established([port]) ?? sockets.size
                  accepted = 0
                  maxInFlight = inFlight
                  served = 0
                  ports = []
                }
              }
            })
          )
        })
      )
    }),
    ({ server, front }) =>
      Effect.async<void>((resume) => {
        front.close()
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ upstream }) => upstream))

export interface ConnectProxy {
  readonly port: number
  readonly url: string
  /** The targets of the CONNECT requests received, in order. */
  readonly connects: () => ReadonlyArray<string>
  /** The `Proxy-Authorization` header of each CONNECT (or undefined). */
  readonly authorizations: () => ReadonlyArray<string | undefined>
  /** Tunnels open now. */
  readonly tunnels: () => number
}

/**
 * An HTTP CONNECT proxy that tunnels to any 127.0.0.1 port. With `require`,
 * a CONNECT without that exact `Proxy-Authorization` gets 407.
 */
export const connectProxy = (options?: {
  readonly require?: string
  /** Serve the proxy itself over TLS (an `https:` proxy). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer }
}): Effect.Effect<ConnectProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; sockets: Set<net.Socket>; proxy: ConnectProxy }>((resume) => {
      const connects: Array<string> = []
      const authorizations: Array<string | undefined> = []
      const sockets = new Set<net.Socket>()
      let tunnels = 0
      const refuse = (_: http.IncomingMessage, res: http.ServerResponse) => {
        res.statusCode = 405
        res.end()
      }
      const server: http.Server =
        options?.tls === undefined ? http.createServer(refuse) : https.createServer(options.tls, refuse)
      server.on("connection", (socket) => {
        sockets.add(socket)
        socket.once("close", () => sockets.delete(socket))
      })
      server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
        connects.push(req.url ?? "")
        authorizations.push(req.headers["proxy-authorization"])
        client.on("error", () => {})
        if (options?.require !== undefined && req.headers["proxy-authorization"] !== options.require) {
          client.end("HTTP/1.1 407 UpstreamProxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
          return
        }
        const [host, port] = (req.url ?? "").split(":")
        if (host !== "127.0.0.1") {
          client.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
          return
        }
        const target = net.connect(Number(port), host, () => {
          tunnels++
          client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
          if (head.length > 0) target.write(head)
          target.pipe(client)
          client.pipe(target)
        })
        sockets.add(target)
        target.on("error", () => client.destroy())
        client.on("close", () => target.destroy())
        target.once("close", () => {
          sockets.delete(target)
          tunnels--
          client.destroy()
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as net.AddressInfo).port
        resume(
          Effect.succeed({
            server,
            sockets,
            proxy: {
              port,
              url: `${options?.tls === undefined ? "http" : "https"}://127.0.0.1:${port}`,
              connects: () => connects,
              authorizations: () => authorizations,
              tunnels: () => tunnels
            }
          })
        )
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ proxy }) => proxy))

/**
 * Polls `read` until `predicate` holds, under the live clock (so it works in
 * `TestClock` tests too); dies after `timeout` (default 5 s) with the last value.
 */
export const eventually = <A>(
  read: () => A,
  predicate: (a: A) => boolean,
  label: string,
  timeout: Duration.DurationInput = "5 seconds"
): Effect.Effect<A> =>
  Effect.suspend(() => {
    let last: A | undefined
    return Effect.sync(read).pipe(
      Effect.tap((a) => {
        last = a
      }),
      Effect.repeat({ until: predicate, schedule: Schedule.spaced("5 millis") }),
      Effect.map(() => last as A),
      Effect.timeoutFail({ duration: timeout, onTimeout: () => `${label}: still ${JSON.stringify(last)}` }),
      Effect.orDie,
      TestServices.provideLive
    )
  })

/** Lets real I/O run for a while under the live clock (to show that something does NOT happen). */
export const settle = (duration: Duration.DurationInput = "50 millis"): Effect.Effect<void> =>
  TestServices.provideLive(Effect.sleep(Duration.decode(duration)))
