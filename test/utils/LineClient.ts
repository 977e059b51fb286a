/**
 * A line-based TCP client over `node:net` for the tests: connect in a scope,
 * send lines, read lines, and see how the connection ended (a reset, a close).
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { loopback } from "./Ports.js"

/**
 * Connecting, writing or reading failed. `code` is Node's error code
 * (`ECONNREFUSED`, `ECONNRESET`, `EPIPE`, …), or `"CLOSED"` when the peer
 * closed the connection without an error.
 *
 * @since 0.1.0
 * @category errors
 */
export class SocketError extends Data.TaggedError("SocketError")<{
  readonly operation: "connect" | "write" | "read"
  readonly code: string
  readonly cause: Error
}> {
  override get message(): string {
    return `socket ${this.operation} failed (${this.code}): ${this.cause.message}`
  }
}

/**
 * How a connection ended: `"CLOSED"` for an orderly close, otherwise the error
 * code that ended it (`ECONNRESET` for a reset).
 *
 * @since 0.1.0
 * @category models
 */
export interface Ended {
  readonly code: string
}

/**
 * An open connection. Use it from one fiber at a time.
 *
 * @since 0.1.0
 * @category models
 */
export interface LineClient {
  /** The local port: unique among this process's open connections. */
  readonly id: number
  /** Writes raw data. */
  readonly write: (data: string) => Effect.Effect<void, SocketError>
  /**
   * The next line the peer sends, without its `\n` or `\r\n`. Lines that
   * arrived before the connection ended are still delivered.
   */
  readonly readLine: Effect.Effect<string, SocketError>
  /** Writes `line` and a newline, then reads the next line. */
  readonly request: (line: string) => Effect.Effect<string, SocketError>
  /** Waits until the connection has ended, and says how. */
  readonly ended: Effect.Effect<Ended>
  /** Whether the connection is still open. */
  readonly isOpen: Effect.Effect<boolean>
  /** Destroys the connection now (the scope would do it later). */
  readonly destroy: Effect.Effect<void>
}

const codeOf = (cause: Error): string => (cause as NodeJS.ErrnoException).code ?? "UNKNOWN"

/**
 * Connects to `host:port` (default host 127.0.0.1). The connection is
 * destroyed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (options: {
  readonly port: number
  readonly host?: string | undefined
}): Effect.Effect<LineClient, SocketError, Scope.Scope> =>
  Effect.gen(function* () {
    // Lines, then `null` once the connection has ended (nothing follows it).
    const lines = yield* Queue.unbounded<string | null>()
    const ended = yield* Deferred.make<Ended>()
    const state: { error: Error | undefined } = { error: undefined }
    const endCode = () => (state.error === undefined ? "CLOSED" : codeOf(state.error))

    // Listeners go on before the first tick: an `error` without one would
    // crash the process (a reset can arrive right after the connect).
    const watch = (socket: net.Socket) => {
      let buffer = ""
      socket.setEncoding("utf8")
      socket.on("data", (chunk: string) => {
        const parts = (buffer + chunk).split("\n")
        buffer = parts.pop()!
        for (const line of parts) Queue.unsafeOffer(lines, line.endsWith("\r") ? line.slice(0, -1) : line)
      })
      socket.on("error", (cause) => {
        state.error ??= cause
      })
      socket.on("close", () => {
        Deferred.unsafeDone(ended, Effect.succeed({ code: endCode() }))
        Queue.unsafeOffer(lines, null)
      })
    }

    const socket = yield* Effect.acquireRelease(open(options.host ?? loopback, options.port, watch), (socket) =>
      Effect.sync(() => socket.destroy())
    )

    const readLine: Effect.Effect<string, SocketError> = Effect.flatMap(Queue.take(lines), (line) => {
      if (line !== null) return Effect.succeed(line)
      // Leave the end in place for the next reader.
      Queue.unsafeOffer(lines, null)
      const cause = state.error ?? new Error("connection closed by peer")
      return Effect.fail(new SocketError({ operation: "read", code: endCode(), cause }))
    })
    const write = (data: string) =>
      Effect.async<void, SocketError>((resume) => {
        if (socket.destroyed || !socket.writable) {
          const cause = state.error ?? new Error("connection is closed")
          return resume(Effect.fail(new SocketError({ operation: "write", code: codeOf(cause), cause })))
        }
        socket.write(data, (cause) =>
          resume(cause ? Effect.fail(new SocketError({ operation: "write", code: codeOf(cause), cause })) : Effect.void)
        )
      })

    return {
      id: socket.localPort ?? 0,
      write,
      readLine,
      request: (line) => Effect.zipRight(write(`${line}\n`), readLine),
      ended: Deferred.await(ended),
      isOpen: Effect.sync(() => !socket.destroyed),
      destroy: Effect.sync(() => socket.destroy())
    }
  })

const open = (host: string, port: number, watch: (socket: net.Socket) => void) =>
  Effect.async<net.Socket, SocketError>((resume) => {
    const socket = net.connect({ host, port })
    watch(socket)
    const onError = (cause: Error) =>
      resume(Effect.fail(new SocketError({ operation: "connect", code: codeOf(cause), cause })))
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.off("error", onError)
      resume(Effect.succeed(socket))
    })
    return Effect.sync(() => socket.destroy())
  })
