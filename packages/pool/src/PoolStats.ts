/**
 * Snapshots of a pool: totals, per-key counts and the configuration in force.
 *
 * All are Schemas so an admin API can send them as they are. Times are epoch
 * milliseconds read from the pool's `Clock`; `null` means unbounded / never.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * One health check, heartbeat or validation result.
 *
 * @since 0.1.0
 * @category models
 */
export const CheckResult = Schema.Struct({
  kind: Schema.Literal("check", "heartbeat", "validate"),
  at: Schema.Number,
  ok: Schema.Boolean,
  millis: Schema.Number,
  error: Schema.optional(Schema.String)
})

/**
 * The type of {@link CheckResult}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CheckResult extends Schema.Schema.Type<typeof CheckResult> {}

/**
 * A key's health: `open` while its circuit is open, `degraded` while it is
 * half-open, failing, or its last check failed, `healthy` otherwise.
 *
 * @since 0.1.0
 * @category models
 */
export const KeyHealth = Schema.Struct({
  state: Schema.Literal("healthy", "degraded", "open"),
  /**
   * The circuit as a caller arriving now meets it: an open circuit whose reset
   * time has passed is `half-open` (it admits a probe) even before one came.
   */
  breaker: Schema.Literal("closed", "open", "half-open"),
  consecutiveFailures: Schema.Number,
  /** When the circuit may be probed again; null unless open. */
  retryAt: Schema.NullOr(Schema.Number),
  lastCheck: Schema.NullOr(CheckResult),
  /** The last results, oldest first (bounded by `checkHistory`). */
  history: Schema.Array(CheckResult),
  transitions: Schema.Array(
    Schema.Struct({
      at: Schema.Number,
      from: Schema.Literal("closed", "open", "half-open"),
      to: Schema.Literal("closed", "open", "half-open")
    })
  )
})

/**
 * The type of {@link KeyHealth}.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyHealth extends Schema.Schema.Type<typeof KeyHealth> {}

/**
 * One key's counts. `size = idle + inUse + creating` at every instant.
 *
 * @since 0.1.0
 * @category models
 */
export const KeyStats = Schema.Struct({
  /** The key as `describeKey` shows it. */
  key: Schema.String,
  /** This key's limit (`maxPerKey`, evaluated for the key). */
  max: Schema.Number,
  size: Schema.Number,
  idle: Schema.Number,
  inUse: Schema.Number,
  creating: Schema.Number,
  waiting: Schema.Number,
  /** Items created / destroyed since the key was opened. */
  created: Schema.Number,
  destroyed: Schema.Number,
  /** Callers that gave up after `acquireTimeout`. */
  timeouts: Schema.Number,
  /** Acquisitions that failed with the resource's own error (or a defect). */
  failures: Schema.Number,
  createdAt: Schema.Number,
  lastUsed: Schema.Number,
  /** Items leased to a health check or heartbeat right now (counted in `inUse`). */
  checking: Schema.Number,
  health: KeyHealth,
  /**
   * Callers' leases on the key's items right now (a pool with
   * `maxLeasesPerItem` above 1; absent with exclusive leases, where it is
   * `inUse - checking`). `inUse` counts items with at least one lease.
   */
  leases: Schema.optional(Schema.Number),
  /** The most leases one item of the key holds right now (with shared leases only). */
  maxLeases: Schema.optional(Schema.Number)
})

/**
 * The type of {@link KeyStats}.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyStats extends Schema.Schema.Type<typeof KeyStats> {}

/**
 * The settings a pool runs with, as plain numbers (`null`: unbounded).
 *
 * @since 0.1.0
 * @category models
 */
export const ConfigInForce = Schema.Struct({
  /** `null` when the limit is a function of the key: see each key's `max`. */
  maxPerKey: Schema.NullOr(Schema.Number),
  maxTotal: Schema.NullOr(Schema.Number),
  maxKeys: Schema.NullOr(Schema.Number),
  minIdlePerKey: Schema.Number,
  idleTimeoutMillis: Schema.NullOr(Schema.Number),
  maxLifetimeMillis: Schema.NullOr(Schema.Number),
  acquireTimeoutMillis: Schema.NullOr(Schema.Number),
  cleanupIntervalMillis: Schema.NullOr(Schema.Number),
  drainTimeoutMillis: Schema.NullOr(Schema.Number),
  createTimeoutMillis: Schema.NullOr(Schema.Number),
  createConcurrency: Schema.NullOr(Schema.Number),
  /** Callers per item (present only when leases are shared; `null`: unbounded). */
  maxLeasesPerItem: Schema.optional(Schema.NullOr(Schema.Number))
})

/**
 * The type of {@link ConfigInForce}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigInForce extends Schema.Schema.Type<typeof ConfigInForce> {}

/**
 * One tenant's group of keys (in a pool given `group`): its limit, its items
 * across its keys (counting those being created), how many of them are idle,
 * and how many live keys it has.
 *
 * @since 0.1.0
 * @category models
 */
export const GroupStats = Schema.Struct({
  group: Schema.String,
  /** `null` when unbounded. */
  max: Schema.NullOr(Schema.Number),
  size: Schema.Number,
  idle: Schema.Number,
  keys: Schema.Number
})

/**
 * The type of {@link GroupStats}.
 *
 * @since 0.1.0
 * @category models
 */
export interface GroupStats extends Schema.Schema.Type<typeof GroupStats> {}

/**
 * A whole pool. Totals are kept as counters, so reading them is O(1); the
 * `perKey` list is O(keys).
 *
 * @since 0.1.0
 * @category models
 */
export const PoolStats = Schema.Struct({
  name: Schema.String,
  closed: Schema.Boolean,
  keys: Schema.Number,
  size: Schema.Number,
  idle: Schema.Number,
  inUse: Schema.Number,
  creating: Schema.Number,
  waiting: Schema.Number,
  /** Callers' leases across all items (with shared leases only; `inUse` counts items). */
  leases: Schema.optional(Schema.Number),
  /**
   * Creations waiting for the creation gate's permit right now (a pool given
   * `gate`, such as a cluster-wide budget; absent otherwise). They count in
   * `creating` too.
   */
  awaitingPermit: Schema.optional(Schema.Number),
  created: Schema.Number,
  destroyed: Schema.Number,
  timeouts: Schema.Number,
  failures: Schema.Number,
  perKey: Schema.Array(KeyStats),
  /** Per tenant group, in a pool given `group`; absent otherwise. */
  perGroup: Schema.optional(Schema.Array(GroupStats)),
  config: ConfigInForce
})

/**
 * The type of {@link PoolStats}.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolStats extends Schema.Schema.Type<typeof PoolStats> {}

/**
 * One live item, for admin views (an MCP gateway's `connectionDetails`).
 *
 * @since 0.1.0
 * @category models
 */
export const ItemDetails = Schema.Struct({
  key: Schema.String,
  state: Schema.Literal("idle", "leased"),
  createdAt: Schema.Number,
  lastUsed: Schema.Number,
  ageMillis: Schema.Number,
  /** How long it has been idle; 0 while leased. */
  idleMillis: Schema.Number,
  /**
   * Callers holding it right now: 0 or 1 with exclusive leases, up to
   * `maxLeasesPerItem` with shared ones (0 while only a health check holds it).
   */
  leases: Schema.Number
})

/**
 * The type of {@link ItemDetails}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ItemDetails extends Schema.Schema.Type<typeof ItemDetails> {}

/**
 * What a `cleanup` did: pool size before and after, and how many idle items
 * it destroyed (and keys it dropped).
 *
 * @since 0.1.0
 * @category models
 */
export const CleanupReport = Schema.Struct({
  before: Schema.Number,
  after: Schema.Number,
  cleaned: Schema.Number,
  keysDropped: Schema.Number
})

/**
 * The type of {@link CleanupReport}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CleanupReport extends Schema.Schema.Type<typeof CleanupReport> {}
