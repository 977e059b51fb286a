/**
 * Loopback addresses and free ports for the real servers the tests start.
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"

/**
 * The only address the tests listen on or connect to.
 *
 * @since 0.1.0
 * @category constants
 */
export const loopback = "127.0.0.1"

/**
 * The operating system would not hand out a port.
 *
 * @since 0.1.0
 * @category errors
 */
export class PortError extends Data.TaggedError("PortError")<{ readonly cause: Error }> {
  override get message(): string {
    return `no free port on ${loopback}: ${this.cause.message}`
  }
}

/**
 * A port on 127.0.0.1 that was free a moment ago: for servers that cannot
 * listen on port 0 and report back (a child process such as `redis-server`).
 * Another process may take it in between, so callers retry on `EADDRINUSE`.
 * Servers in this process listen on port 0 instead.
 *
 * @since 0.1.0
 * @category constructors
 */
export const freePort: Effect.Effect<number, PortError> = Effect.async<number, PortError>((resume) => {
  const server = net.createServer()
  server.unref()
  server.once("error", (cause) => resume(Effect.fail(new PortError({ cause }))))
  server.listen(0, loopback, () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})
