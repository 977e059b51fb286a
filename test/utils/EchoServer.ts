/**
 * A line-based TCP server on 127.0.0.1 that answers `PING` with `PONG` and
 * echoes every other line: the upstream real-socket tests pool connections to.
 * It can be stopped and started again on the same port, like a restarted
 * server.
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { loopback } from "./Ports.js"

/**
 * The server could not listen (on `start`, the port was taken meanwhile).
 *
 * @since 0.1.0
 * @category errors
 */
export class EchoServerError extends Data.TaggedError("EchoServerError")<{
  readonly port: number
  readonly cause: Error
}> {
  override get message(): string {
    return `echo server could not listen on ${loopback}:${this.port}: ${this.cause.message}`
  }
}

/**
 * A running (or stopped) echo server.
 *
 * @since 0.1.0
 * @category models
 */
export interface EchoServer {
  readonly host: string
  /** Fixed for the server's life: `start` after `stop` listens here again. */
  readonly port: number
  /** Connections open right now, as the server sees them. */
  readonly connections: Effect.Effect<number>
  /** Connections accepted since the server was made, across restarts. */
  readonly accepted: Effect.Effect<number>
  /** Whether it is listening. */
  readonly listening: Effect.Effect<boolean>
  /**
   * Stops listening and destroys every open connection, as a crash would;
   * returns once all of them are closed. Does nothing when already stopped.
   */
  readonly stop: Effect.Effect<void>
  /** Listens again on the same port. Does nothing when already listening. */
  readonly start: Effect.Effect<void, EchoServerError>
  /** `stop`, then `start`. */
  readonly restart: Effect.Effect<void, EchoServerError>
}

/**
 * Starts an echo server on 127.0.0.1 and a free port. Closing the scope stops
 * it (connections destroyed, port released).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<EchoServer, EchoServerError, Scope.Scope> = Effect.gen(function* () {
  const open = new Set<net.Socket>()
  let accepted = 0
  let server: net.Server | undefined
  let port = 0

  const onConnection = (socket: net.Socket) => {
    accepted++
    open.add(socket)
    socket.on("close", () => open.delete(socket))
    // A client that vanishes mid-write is its business, not the server's.
    socket.on("error", () => {})
    socket.setEncoding("utf8")
    let buffer = ""
    socket.on("data", (chunk: string) => {
      const lines = (buffer + chunk).split("\n")
      buffer = lines.pop()!
      for (const line of lines) {
        if (socket.writable) socket.write(line === "PING" ? "PONG\n" : `${line}\n`)
      }
    })
  }

  const listen = Effect.async<void, EchoServerError>((resume) => {
    const next = net.createServer(onConnection)
    next.once("error", (cause) => resume(Effect.fail(new EchoServerError({ port, cause }))))
    next.listen(port, loopback, () => {
      server = next
      port = (next.address() as net.AddressInfo).port
      resume(Effect.void)
    })
  })

  const start = Effect.suspend(() => (server === undefined ? listen : Effect.void))

  const closed = (socket: net.Socket) =>
    Effect.async<void>((resume) => {
      if (!open.has(socket)) return resume(Effect.void)
      socket.once("close", () => resume(Effect.void))
    })

  const stop = Effect.suspend(() => {
    const current = server
    if (current === undefined) return Effect.void
    server = undefined
    const sockets = [...open]
    for (const socket of sockets) socket.destroy()
    return Effect.zipRight(
      Effect.forEach(sockets, closed, { discard: true }),
      Effect.async<void>((resume) => {
        current.close(() => resume(Effect.void))
      })
    )
  })

  yield* Effect.acquireRelease(listen, () => stop)

  return {
    host: loopback,
    port,
    connections: Effect.sync(() => open.size),
    accepted: Effect.sync(() => accepted),
    listening: Effect.sync(() => server !== undefined),
    stop,
    start,
    restart: Effect.zipRight(stop, start)
  }
})
