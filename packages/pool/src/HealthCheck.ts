/**
 * Keeping pooled resources healthy: telling connection failures from caller
 * faults, and the options of health checks, heartbeats and retries.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"

/**
 * A periodic check of idle items (a ping), every `healthCheckInterval` (30
 * seconds unless set): an item that fails or exceeds
 * `timeout` is destroyed and, up to `minIdlePerKey`, replaced. Checks take an
 * item out of idle while they run (stats count it as in use and checking), so
 * a caller never shares it with a check.
 *
 * @since 0.1.0
 * @category models
 */
export interface Check<A> {
  readonly check: (item: A) => Effect.Effect<unknown, unknown>
  /** Each check's bound. Default 5 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * A keep-alive sent to idle items, every `heartbeatInterval` (60 seconds
 * unless set), so server-side idle timeouts do not kill them. Its timeout is how a half-open peer is found: Node offers no socket
 * option for that.
 *
 * @since 0.1.0
 * @category models
 */
export interface Heartbeat<A> {
  readonly beat: (item: A) => Effect.Effect<unknown, unknown>
  /** Each beat's bound. Default 5 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
}

const connectionCodes = new Set([
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTCONN",
  "ERR_SOCKET_CLOSED",
  "ERR_STREAM_DESTROYED",
  // undici (Node's fetch): a reset mid-body surfaces as UND_ERR_SOCKET, wrapped in a TypeError's `cause`.
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_CLOSED",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT"
])

const describes = (u: unknown, depth: number): boolean => {
  if (typeof u !== "object" || u === null || depth > 4) return false
  const e = u as { code?: unknown; message?: unknown; cause?: unknown; error?: unknown; _tag?: unknown }
  if (typeof e.code === "string" && connectionCodes.has(e.code)) return true
  // An operation that timed out leaves its connection in an unknown state.
  if (e._tag === "TimeoutException") return true
  if (typeof e.message === "string" && /socket hang up|ECONNRESET|EPIPE|ETIMEDOUT|ECONNREFUSED/.test(e.message)) {
    return true
  }
  return describes(e.cause, depth + 1) || describes(e.error, depth + 1)
}

/**
 * The default classifier: whether an error (or its `cause`, or the `error` it
 * wraps) is one of Node's connection errors — ECONNRESET, EPIPE, ETIMEDOUT,
 * ECONNREFUSED, "socket hang up" and their kin — one of undici's (`fetch`)
 * socket errors — UND_ERR_SOCKET, UND_ERR_CONNECT_TIMEOUT, UND_ERR_CLOSED,
 * UND_ERR_HEADERS_TIMEOUT, UND_ERR_BODY_TIMEOUT — or Effect's
 * `TimeoutException` (an operation that timed out leaves its connection in an
 * unknown state). Such failures destroy the item, count for the circuit
 * breaker, and are retried when retries are on. Map your client's own errors
 * with the `isConnectionError` option.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isConnectionError = (error: unknown): boolean => describes(error, 0)

/**
 * The default retry schedule of `use` when retries are on: exponential
 * backoff from 100 ms with jitter, each delay capped at 5 seconds, at most 3
 * retries.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.seconds(5))),
  Schedule.intersect(Schedule.recurs(3))
)
