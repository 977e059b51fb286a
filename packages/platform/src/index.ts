/**
 * @since 0.1.0
 */

/**
 * The admin `HttpApi` description: pools, cleanup, health, metrics, errors
 * and the bearer-auth middlewares.
 *
 * @since 0.1.0
 */
export * as AdminApi from "./AdminApi.js"
/**
 * Bearer-token authentication of the admin API, compared in constant time.
 *
 * @since 0.1.0
 */
export * as AdminAuth from "./AdminAuth.js"
/**
 * A live dashboard of the pools, served by the admin API: charts, key table,
 * events and configuration, fed by server-sent events.
 *
 * @since 0.1.0
 */
export * as AdminDashboard from "./AdminDashboard.js"

/**
 * How the admin API judges the pools' health.
 *
 * @since 0.1.0
 */
export * as AdminHealth from "./AdminHealth.js"

/**
 * Handlers and layers serving the admin API from the `PoolRegistry`, and the
 * mapping to a multi-user MCP gateway's `pool-status` JSON.
 *
 * @since 0.1.0
 */
export * as AdminHttp from "./AdminHttp.js"

/**
 * A concurrency limit for requests (in flight, queued, queue timeout) as an
 * HTTP middleware answering 503/429 with `Retry-After`, and as an Effect
 * combinator with a typed error.
 *
 * @since 0.1.0
 */
export * as ConcurrencyLimit from "./ConcurrencyLimit.js"

/**
 * Effect metrics in the Prometheus text exposition format.
 *
 * @since 0.1.0
 */
export * as PrometheusText from "./PrometheusText.js"

/**
 * Streams an upstream response (SSE or chunked) while holding a pool lease
 * that ends with the stream: completion, failure, maximum duration or client
 * disconnect.
 *
 * @since 0.1.0
 */
export * as StreamLease from "./StreamLease.js"
