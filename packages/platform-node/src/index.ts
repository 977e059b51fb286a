/**
 * @since 0.1.0
 */

/**
 * An `@effect/platform` `HttpClient` on pooled upstream connections: a
 * request holds its connection exactly as long as its response is alive.
 *
 * @since 0.1.0
 */
export * as UpstreamHttpClient from "./UpstreamHttpClient.js"

/**
 * Pooled upstream HTTP connections: undici clients, one socket each, per
 * origin × proxy × credential.
 *
 * @since 0.1.0
 */
export * as UpstreamPool from "./UpstreamPool.js"

/**
 * Relays an upstream's streamed answer to an HTTP client over a pooled
 * connection, piped by Node, the lease held until the body ends.
 *
 * @since 0.1.0
 */
export * as UpstreamRelay from "./UpstreamRelay.js"
