/**
 * @since 0.1.0
 */

/**
 * A connection budget shared by every instance of a service through Redis:
 * at most N connections across instances, per-tenant limits, permits of a
 * dead instance reclaimed after its lease.
 *
 * @since 0.1.0
 */
export * as ClusterBudget from "./ClusterBudget.js"

/**
 * The Redis client (ioredis) as a scoped resource, with bounded commands and
 * classified errors.
 *
 * @since 0.1.0
 */
export * as RedisClient from "./RedisClient.js"

/**
 * The error of a Redis command, classified for circuit breakers.
 *
 * @since 0.1.0
 */
export * as RedisError from "./RedisError.js"

/**
 * A `SessionStore` shared through Redis: memory LRU in front, write-behind
 * batches, fallback to memory while Redis is unreachable.
 *
 * @since 0.1.0
 */
export * as RedisSessionStore from "./RedisSessionStore.js"
