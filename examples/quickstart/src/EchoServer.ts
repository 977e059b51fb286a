/**
 * A tiny TCP echo server on 127.0.0.1, started in the caller's process and
 * scope: the upstream the quickstart pools connections to.
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/**
 * The server could not listen.
 *
 * @since 0.1.0
 * @category errors
 */
export class EchoServerError extends Data.TaggedError("EchoServerError")<{ readonly cause: Error }> {
  override get message(): string {
    return `echo server: ${this.cause.message}`
  }
}

/**
 * A running echo server: every byte a client sends comes back to it.
 *
 * @since 0.1.0
 * @category models
 */
export interface EchoServer {
  readonly host: string
  readonly port: number
  /** Connections open right now, as the server sees them. */
  readonly connections: Effect.Effect<number>
  /** Connections accepted since the server started. */
  readonly accepted: Effect.Effect<number>
}

const host = "127.0.0.1"

/**
 * Starts an echo server on `127.0.0.1` and a free port. Closing the scope
 * destroys the connections still open and closes the server.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<EchoServer, EchoServerError, Scope.Scope> = Effect.gen(function* () {
  const open = new Set<net.Socket>()
  let accepted = 0
  const server = net.createServer((socket) => {
    accepted++
    open.add(socket)
    socket.on("close", () => open.delete(socket))
    // A client vanishing mid-write is its own business, not the server's.
    socket.on("error", () => {})
    socket.pipe(socket)
  })

  yield* Effect.acquireRelease(
    Effect.async<void, EchoServerError>((resume) => {
      server.once("error", (cause) => resume(Effect.fail(new EchoServerError({ cause }))))
      server.listen(0, host, () => resume(Effect.void))
    }),
    () =>
      Effect.async<void>((resume) => {
        for (const socket of open) socket.destroy()
        server.close(() => resume(Effect.void))
      })
  )

  return {
    host,
    port: (server.address() as net.AddressInfo).port,
    connections: Effect.sync(() => open.size),
    accepted: Effect.sync(() => accepted)
  }
})
