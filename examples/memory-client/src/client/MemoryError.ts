/**
 * The errors of the memory client, and the one place where the MCP SDK's
 * and `fetch`'s errors are turned into them.
 *
 * The split is what the pool acts on: a {@link MemoryUnavailable} means the
 * connection is gone or in doubt (the item is destroyed, rebuilt, and the call
 * retried with backoff); an {@link InvalidApiKey} or a
 * {@link MemoryProtocolError} is the caller's or the service's answer, which a
 * retry would only repeat.
 */
import { PoolError } from "@cistern/pool"
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js"
import { Data } from "effect"

/** The memory service refused the API key (HTTP 401 or 403). Retrying cannot help. */
export class InvalidApiKey extends Data.TaggedError("InvalidApiKey")<{ readonly status: number }> {
  override get message(): string {
    return `the memory service rejected the API key (HTTP ${this.status}): check MEM0_API_KEY`
  }
}

/** Why a connection is unusable. */
export type UnavailableReason = "reset" | "refused" | "timeout" | "session-lost" | "server-error" | "closed"

/** The connection to the memory service broke or is in doubt: rebuild it and retry. */
export class MemoryUnavailable extends Data.TaggedError("MemoryUnavailable")<{
  readonly operation: string
  readonly reason: UnavailableReason
  readonly detail: string
}> {
  override get message(): string {
    return `${this.operation}: memory service unavailable (${this.reason}): ${this.detail}`
  }
}

/** The service answered, but not with what the operation expects (a tool error, a malformed result). */
export class MemoryProtocolError extends Data.TaggedError("MemoryProtocolError")<{
  readonly operation: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.operation}: ${this.detail}`
  }
}

/** Every error of a memory operation. */
export type MemoryError = InvalidApiKey | MemoryUnavailable | MemoryProtocolError

/**
 * What the pool treats as a connection failure: destroy the connection, and
 * retry on a fresh one. A creation that outlived `MEM0_CONNECTION_TIMEOUT`
 * counts too.
 */
export const isConnectionError = (error: unknown): boolean =>
  error instanceof MemoryUnavailable || error instanceof PoolError.CreateTimeout

const refused = new Set(["ECONNREFUSED"])
const reset = new Set([
  "ECONNRESET",
  "EPIPE",
  "ECONNABORTED",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "ERR_STREAM_PREMATURE_CLOSE"
])

/** The first Node or undici error code along an error's `cause` chain. */
const codeOf = (error: unknown, depth = 0): string | undefined => {
  if (typeof error !== "object" || error === null || depth > 5) return undefined
  const e = error as { code?: unknown; cause?: unknown }
  return typeof e.code === "string" ? e.code : codeOf(e.cause, depth + 1)
}

const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error)
  const code = codeOf(error)
  return code === undefined ? error.message : `${error.message} (${code})`
}

/** Maps what the SDK or `fetch` threw during `operation` to a {@link MemoryError}. */
export const fromUnknown = (operation: string, error: unknown): MemoryError => {
  const unavailable = (reason: UnavailableReason) =>
    new MemoryUnavailable({ operation, reason, detail: describe(error) })
  if (error instanceof StreamableHTTPError) {
    const status = error.code ?? 0
    if (status === 401 || status === 403) return new InvalidApiKey({ status })
    if (status === 404) return unavailable("session-lost")
    if (status >= 500) return unavailable("server-error")
    return new MemoryProtocolError({ operation, detail: describe(error) })
  }
  if (error instanceof McpError) {
    if (error.code === ErrorCode.ConnectionClosed) return unavailable("closed")
    if (error.code === ErrorCode.RequestTimeout) return unavailable("timeout")
    return new MemoryProtocolError({ operation, detail: error.message })
  }
  const code = codeOf(error)
  if (code !== undefined && refused.has(code)) return unavailable("refused")
  if (code !== undefined && reset.has(code)) return unavailable("reset")
  // undici's fetch fails with a TypeError ("fetch failed", "terminated") whatever broke underneath.
  if (error instanceof TypeError && /fetch failed|terminated|other side closed/.test(error.message)) {
    return unavailable("reset")
  }
  if (error instanceof Error && error.name === "AbortError") return unavailable("closed")
  return new MemoryProtocolError({ operation, detail: describe(error) })
}
