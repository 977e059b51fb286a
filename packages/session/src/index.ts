/**
 * @since 0.1.0
 */

/**
 * Sticky sessions over a keyed pool: pin a session to a pool key and resolve
 * it per request, moving it when the key's circuit opens.
 *
 * @since 0.1.0
 */
export * as Affinity from "./Affinity.js"

/**
 * The bounded, indexed, expiring map every session store keeps in memory.
 *
 * @since 0.1.0
 */
export * as SessionCache from "./SessionCache.js"

/**
 * The errors a session store adds: `SessionSchemaError`.
 *
 * @since 0.1.0
 */
export * as SessionError from "./SessionError.js"

/**
 * Every metric a session store reports (`cistern_session_*`).
 *
 * @since 0.1.0
 */
export * as SessionMetrics from "./SessionMetrics.js"

/**
 * The stats snapshot of a session store.
 *
 * @since 0.1.0
 */
export * as SessionStats from "./SessionStats.js"

/**
 * Typed sessions with TTLs, secondary indexes and atomic updates; the memory
 * store.
 *
 * @since 0.1.0
 */
export * as SessionStore from "./SessionStore.js"
