/**
 * A line-oriented TCP client over `node:net`: connect in a scope, send a line,
 * read the line that comes back.
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

/**
 * Connecting, writing or reading failed, or the connection was closed.
 *
 * @since 0.1.0
 * @category errors
 */
export class SocketError extends Data.TaggedError("SocketError")<{
  readonly operation: "connect" | "write" | "read"
  readonly cause: Error
}> {
  override get message(): string {
    return `socket ${this.operation}: ${this.cause.message}`
  }
}

/**
 * An open connection. Use it from one fiber at a time (a pool lease ensures
 * that).
 *
 * @since 0.1.0
 * @category models
 */
export interface Socket {
  /** The local port: unique among the open connections of this process. */
  readonly id: number
  /** Writes `line` and waits for the next line the peer sends. */
  readonly request: (line: string) => Effect.Effect<string, SocketError>
  /** Whether the connection is still open. */
  readonly isOpen: Effect.Effect<boolean>
}

/**
 * Opens a connection that lives as long as the scope: closing the scope ends
 * it (and destroys it if the peer does not answer the end within a second).
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (options: {
  readonly host: string
  readonly port: number
}): Effect.Effect<Socket, SocketError, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = yield* Effect.acquireRelease(open(options), close)
    const lines = yield* Queue.unbounded<string>()
    const broken = yield* Deferred.make<never, SocketError>()
    const fail = (cause: Error) => Deferred.unsafeDone(broken, Exit.fail(new SocketError({ operation: "read", cause })))

    let buffer = ""
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => {
      const parts = (buffer + chunk).split("\n")
      buffer = parts.pop()!
      for (const line of parts) Queue.unsafeOffer(lines, line)
    })
    socket.on("error", fail)
    socket.on("close", () => fail(new Error("connection closed")))

    const write = (data: string) =>
      Effect.async<void, SocketError>((resume) => {
        socket.write(data, (cause) =>
          resume(cause ? Effect.fail(new SocketError({ operation: "write", cause })) : Effect.void)
        )
      })

    return {
      id: socket.localPort ?? 0,
      request: (line) =>
        Effect.zipRight(write(`${line}\n`), Effect.raceFirst(Queue.take(lines), Deferred.await(broken))),
      isOpen: Effect.sync(() => !socket.destroyed)
    }
  })

const open = (options: { readonly host: string; readonly port: number }) =>
  Effect.async<net.Socket, SocketError>((resume) => {
    const socket = net.connect(options)
    const onError = (cause: Error) => resume(Effect.fail(new SocketError({ operation: "connect", cause })))
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    })
    return Effect.sync(() => socket.destroy())
  })

const close = (socket: net.Socket): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    socket.once("close", () => resume(Effect.void))
    socket.end()
  }).pipe(Effect.timeoutOption("1 second"), Effect.ensuring(Effect.sync(() => socket.destroy())))
