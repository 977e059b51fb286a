import * as HealthCheck from "@cistern/pool/HealthCheck"

/**
 * undici's codes for a connection that broke or timed out: its socket can no
 * longer be trusted. A request aborted by its caller (`UND_ERR_ABORTED`), an
 * invalid argument or a response over `maxResponseSize` are the caller's
 * business and are not here.
 */
const undiciCodes = new Set([
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_CLOSED",
  "UND_ERR_DESTROYED",
  "UND_ERR_INFO",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
  "UND_ERR_HEADERS_OVERFLOW",
  "UND_ERR_PRX_TLS"
])

const describes = (u: unknown, depth: number): boolean => {
  if (typeof u !== "object" || u === null || depth > 4) return false
  const e = u as { code?: unknown; _tag?: unknown; cause?: unknown; error?: unknown }
  if (typeof e.code === "string" && (undiciCodes.has(e.code) || e.code.startsWith("HPE_"))) return true
  if (e._tag === "UpstreamConnectError") return true
  return describes(e.cause, depth + 1) || describes(e.error, depth + 1)
}

/** @internal */
export const isConnectionError = (error: unknown): boolean =>
  describes(error, 0) || HealthCheck.isConnectionError(error)
