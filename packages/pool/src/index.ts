/**
 * @since 0.1.0
 */

/**
 * Per-key circuit breaking: options and defaults.
 *
 * @since 0.1.0
 */
export * as CircuitBreaker from "./CircuitBreaker.js"

/**
 * Health checks, heartbeats, and telling connection failures from caller faults.
 *
 * @since 0.1.0
 */
export * as HealthCheck from "./HealthCheck.js"

/**
 * A pool of resources per key, with per-key and total limits, idle expiry,
 * credential-aware reuse and scope-bound leases.
 *
 * @since 0.1.0
 */
export * as KeyedPool from "./KeyedPool.js"

/**
 * A pool of interchangeable resources: the single-key case of `KeyedPool`.
 *
 * @since 0.1.0
 */
export * as Pool from "./Pool.js"

/**
 * Settings, defaults and validated `Config` readers.
 *
 * @since 0.1.0
 */
export * as PoolConfig from "./PoolConfig.js"

/**
 * The errors a pool adds: `PoolTimeout`, `PoolClosed`, `KeyLimitExceeded`.
 *
 * @since 0.1.0
 */
export * as PoolError from "./PoolError.js"

/**
 * Every metric a pool reports (`cistern_pool_*`).
 *
 * @since 0.1.0
 */
export * as PoolMetrics from "./PoolMetrics.js"

/**
 * The pools an application runs, by name, for admin APIs.
 *
 * @since 0.1.0
 */
export * as PoolRegistry from "./PoolRegistry.js"

/**
 * Stats and cleanup report models.
 *
 * @since 0.1.0
 */
export * as PoolStats from "./PoolStats.js"
