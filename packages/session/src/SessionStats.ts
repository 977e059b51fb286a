/**
 * A snapshot of a session store: what it holds and what happened to it since
 * it started. A Schema, so an admin API can send it as it is.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * Counters and state of one store. Counters start at 0 when the store starts.
 *
 * @since 0.1.0
 * @category models
 */
export const SessionStats = Schema.Struct({
  /** The store's name (the `store` label of its metrics). */
  name: Schema.String,
  /** `"memory"` or `"redis"`. */
  backend: Schema.Literal("memory", "redis"),
  /**
   * Live sessions held in this instance's memory. For the memory store, every
   * session; for a Redis store, its cache in front of Redis (and, during an
   * outage, what this instance can serve).
   */
  live: Schema.Number,
  /** The memory bound: sessions (memory store) or cache entries (Redis store). */
  capacity: Schema.Number,
  /** Reads answered from memory. */
  hits: Schema.Number,
  /** Reads that found nothing in memory (the memory store) or went to Redis (a Redis store). */
  misses: Schema.Number,
  /** Sessions (or cache entries) pushed out by the capacity bound, least recently used first. */
  evictions: Schema.Number,
  /** Sessions removed because their TTL passed. */
  expired: Schema.Number,
  /** Values that failed the schema (see `SessionSchemaError`). */
  schemaErrors: Schema.Number,
  /** Failed or timed-out storage commands (each one sends the store to memory until storage answers again). */
  storeErrors: Schema.Number,
  /** Whether the store is serving from memory because its storage is unreachable. */
  fallback: Schema.Boolean,
  /** Writes waiting to reach storage. */
  pendingWrites: Schema.Number,
  /** Writes given up because the pending queue was full (oldest first). */
  droppedWrites: Schema.Number,
  /** Writes that reached storage after an outage. */
  replayedWrites: Schema.Number,
  /** Batches written to storage. */
  flushes: Schema.Number
})

/**
 * A store's counters and state, as a plain value.
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionStats extends Schema.Schema.Type<typeof SessionStats> {}
