/**
 * The errors a pool adds to the resource's own error type.
 *
 * They are `Schema.TaggedError`s so they can cross HTTP or storage intact, and
 * each carries what a person needs to act on it: the key (as shown by
 * `describeKey`, never raw credentials), how long the caller waited, the limits
 * in force and a snapshot of the pool.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * How full a key and the whole pool were at one instant.
 *
 * @since 0.1.0
 * @category models
 */
export const Occupancy = Schema.Struct({
  size: Schema.Number,
  idle: Schema.Number,
  inUse: Schema.Number,
  creating: Schema.Number,
  waiting: Schema.Number
})

/**
 * The type of {@link Occupancy}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Occupancy extends Schema.Schema.Type<typeof Occupancy> {}

/**
 * The limits in force for a key; `null` means unbounded.
 *
 * @since 0.1.0
 * @category models
 */
export const Limits = Schema.Struct({
  maxPerKey: Schema.Number,
  maxTotal: Schema.NullOr(Schema.Number),
  acquireTimeoutMillis: Schema.NullOr(Schema.Number)
})

/**
 * The type of {@link Limits}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limits extends Schema.Schema.Type<typeof Limits> {}

/**
 * The caller waited `acquireTimeout` without getting an item. Its place in the
 * queue is gone: an item released later goes to the next live waiter.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolTimeout extends Schema.TaggedError<PoolTimeout>("@cistern/pool/PoolTimeout")("PoolTimeout", {
  key: Schema.String,
  waitedMillis: Schema.Number,
  limits: Limits,
  keySnapshot: Occupancy,
  poolSnapshot: Occupancy
}) {
  override get message(): string {
    const k = this.keySnapshot
    const p = this.poolSnapshot
    return (
      `no item for key ${this.key} within ${this.waitedMillis} ms ` +
      `(key: ${k.inUse} in use, ${k.creating} creating, ${k.waiting} waiting, limit ${this.limits.maxPerKey}; ` +
      `pool: ${p.size} of ${this.limits.maxTotal ?? "unbounded"})`
    )
  }
}

/**
 * The pool's scope has closed (or is closing): nothing more is handed out.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolClosed extends Schema.TaggedError<PoolClosed>("@cistern/pool/PoolClosed")("PoolClosed", {
  key: Schema.String
}) {
  override get message(): string {
    return `the pool is closed (key ${this.key})`
  }
}

/**
 * A new key was asked for while `maxKeys` distinct keys were live and none of
 * them was entirely idle, so none could be evicted to make room.
 *
 * @since 0.1.0
 * @category errors
 */
export class KeyLimitExceeded extends Schema.TaggedError<KeyLimitExceeded>("@cistern/pool/KeyLimitExceeded")(
  "KeyLimitExceeded",
  {
    key: Schema.String,
    maxKeys: Schema.Number,
    poolSnapshot: Occupancy
  }
) {
  override get message(): string {
    return `cannot open key ${this.key}: ${this.maxKeys} keys are live and none is idle`
  }
}

/**
 * The key's circuit is open: its callers fail at once, without a connection
 * attempt, until `retryAfterMillis` have passed and probes have succeeded.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>("@cistern/pool/CircuitOpen")("CircuitOpen", {
  key: Schema.String,
  retryAfterMillis: Schema.Number,
  consecutiveFailures: Schema.Number
}) {
  override get message(): string {
    return `the circuit of key ${this.key} is open after ${this.consecutiveFailures} failures; retry in ${this.retryAfterMillis} ms`
  }
}

/**
 * Creating an item took longer than `createTimeout`; what the creation had
 * acquired so far was released.
 *
 * @since 0.1.0
 * @category errors
 */
export class CreateTimeout extends Schema.TaggedError<CreateTimeout>("@cistern/pool/CreateTimeout")("CreateTimeout", {
  key: Schema.String,
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `creating an item for key ${this.key} took longer than ${this.timeoutMillis} ms`
  }
}

/**
 * A health check, heartbeat or validation of an item outlived its `timeout`
 * (how a half-open connection is found). The pool destroys the item; the
 * error shows in the key's check history and logs, never to a caller.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckTimeout extends Schema.TaggedError<CheckTimeout>("@cistern/pool/CheckTimeout")("CheckTimeout", {
  check: Schema.Literal("check", "heartbeat", "validation"),
  timeoutMillis: Schema.Number
}) {
  override get message(): string {
    return `${this.check} timed out after ${this.timeoutMillis} ms`
  }
}

/**
 * An option given to `make` (or `layer`) is invalid: a zero limit, a negative
 * or NaN duration, a zero interval, a string where a number belongs, a floor
 * above its limit. It is a programmer error, so `make` dies with it (a
 * defect) before the pool exists; it names the option, the value and what
 * was expected. Settings read from the environment fail earlier, with a
 * `ConfigError` naming the variable (see `PoolConfig`).
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>("@cistern/pool/InvalidOption")("InvalidOption", {
  option: Schema.String,
  value: Schema.String,
  expected: Schema.String
}) {
  override get message(): string {
    return `@cistern/pool: option ${this.option} = ${this.value} is invalid: expected ${this.expected}`
  }
}

/**
 * Every error a pool adds to the resource's own.
 *
 * @since 0.1.0
 * @category errors
 */
export type PoolError = PoolTimeout | PoolClosed | KeyLimitExceeded | CircuitOpen | CreateTimeout

/**
 * The schema of {@link PoolError}, for APIs that send it over the wire.
 *
 * @since 0.1.0
 * @category errors
 */
export const PoolError: Schema.Union<
  [typeof PoolTimeout, typeof PoolClosed, typeof KeyLimitExceeded, typeof CircuitOpen, typeof CreateTimeout]
> = Schema.Union(PoolTimeout, PoolClosed, KeyLimitExceeded, CircuitOpen, CreateTimeout)

/**
 * Whether a value is one of the pool's own errors.
 *
 * @since 0.1.0
 * @category refinements
 */
export const isPoolError = (u: unknown): u is PoolError =>
  u instanceof PoolTimeout ||
  u instanceof PoolClosed ||
  u instanceof KeyLimitExceeded ||
  u instanceof CircuitOpen ||
  u instanceof CreateTimeout
