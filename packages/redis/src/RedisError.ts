/**
 * The error of a Redis command, classified so a circuit breaker (or a
 * session store's fallback) can tell an unreachable server from a refused
 * command.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * A Redis command failed. `reason` is `"connection"` when the server could
 * not be reached or the connection broke (refused, reset, closed, not ready
 * and no offline queue), `"timeout"` when no reply came within the command
 * timeout, and `"command"` when the server answered with an error (a script
 * error, a wrong type). The first two are connection errors: see
 * {@link isConnectionError}.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisError extends Data.TaggedError("RedisError")<{
  readonly command: string
  readonly reason: "connection" | "timeout" | "command"
  readonly detail: string
}> {
  override get message(): string {
    return `Redis ${this.command} failed (${this.reason}): ${this.detail}`
  }
}

const connectionCodes = /ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTCONN|EHOSTUNREACH|ENETUNREACH|ECONNABORTED/
const connectionMessages =
  /Connection is closed|Stream isn't writeable|enableOfflineQueue|MaxRetriesPerRequest|Reached the max retries|connect ETIMEDOUT|socket/i

/**
 * Classifies what a client promise rejected with.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromUnknown = (command: string, cause: unknown): RedisError => {
  const error = cause as { name?: unknown; message?: unknown; code?: unknown }
  const message = typeof error?.message === "string" ? error.message : String(cause)
  const code = typeof error?.code === "string" ? error.code : ""
  const reason =
    message === "Command timed out"
      ? "timeout"
      : error?.name === "ReplyError"
        ? "command"
        : connectionCodes.test(code) || connectionCodes.test(message) || connectionMessages.test(message)
          ? "connection"
          : "command"
  return new RedisError({ command, reason, detail: message })
}

/**
 * Whether an error is a `RedisError` of an unreachable or unresponsive
 * server: pass it as a pool's `isConnectionError` so such failures open the
 * breaker, while refused commands do not.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isConnectionError = (u: unknown): boolean => u instanceof RedisError && u.reason !== "command"
