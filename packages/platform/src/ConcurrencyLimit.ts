/**
 * A concurrency limit for requests: at most `maxConcurrent` in flight, at most
 * `maxQueued` waiting for a slot, each for at most `queueTimeout`. Beyond
 * that a request is turned away at once (503 with `Retry-After`, or 429), so a
 * burst cannot run a connection pool dry. A queued caller that goes away (an
 * HTTP client that disconnects, an interrupted fiber) leaves the queue.
 *
 * ```ts
 * import { ConcurrencyLimit } from "@cistern/platform"
 * import { HttpRouter, HttpServer } from "@effect/platform"
 * import { Effect, Layer } from "effect"
 *
 * // the application's own routes, and a call to an upstream
 * declare const router: HttpRouter.HttpRouter
 * declare const callUpstream: Effect.Effect<string, Error>
 *
 * // MAX_CONCURRENT_REQUESTS, MAX_QUEUED_REQUESTS, QUEUE_TIMEOUT
 * const LimitLive = ConcurrencyLimit.layerConfig(ConcurrencyLimit.config())
 *
 * const ServerLive = Effect.gen(function* () {
 *   const limit = yield* ConcurrencyLimit.ConcurrencyLimit
 *   return HttpServer.serve(router, ConcurrencyLimit.middleware(limit))
 * }).pipe(Layer.unwrapEffect, Layer.provide(LimitLive))
 *
 * // the Effect form: fails with ConcurrencyLimitExceeded
 * const answer = ConcurrencyLimit.limited(callUpstream)
 * ```
 *
 * @since 0.1.0
 */
import type { HttpMiddleware } from "@effect/platform"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as internal from "./internal/concurrencyLimit.js"

/**
 * A request was turned away: the queue was full (`queue-full`, at once) or it
 * waited `queueTimeout` for a slot (`queue-timeout`). `retryAfterSeconds` is
 * what the HTTP form sends as `Retry-After`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConcurrencyLimitExceeded extends Schema.TaggedError<ConcurrencyLimitExceeded>(
  "@cistern/platform/ConcurrencyLimitExceeded"
)("ConcurrencyLimitExceeded", {
  name: Schema.String,
  reason: Schema.Literal("queue-full", "queue-timeout"),
  maxConcurrent: Schema.Number,
  maxQueued: Schema.Number,
  waitedMillis: Schema.Number,
  retryAfterSeconds: Schema.Number
}) {
  override get message(): string {
    return this.reason === "queue-full"
      ? `${this.name}: ${this.maxConcurrent} in flight and ${this.maxQueued} queued; retry in ${this.retryAfterSeconds} s`
      : `${this.name}: no slot within ${this.waitedMillis} ms (${this.maxConcurrent} in flight); retry in ${this.retryAfterSeconds} s`
  }
}

/**
 * How many requests run and wait.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Shown in errors and stats. Default `"requests"`. */
  readonly name?: string | undefined
  /** Requests in flight. Default 100. */
  readonly maxConcurrent?: number | undefined
  /** Requests waiting for a slot; 0 turns away every request beyond `maxConcurrent`. Default 100. */
  readonly maxQueued?: number | undefined
  /** How long a request may wait for a slot. Default 10 seconds. */
  readonly queueTimeout?: Duration.DurationInput | undefined
  /** What `Retry-After` tells a turned-away client, rounded up to whole seconds (at least 1). Default 1 second. */
  readonly retryAfter?: Duration.DurationInput | undefined
}

/**
 * A snapshot of a limit: occupancy, limits and counters.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly name: string
  readonly inFlight: number
  readonly queued: number
  readonly maxConcurrent: number
  readonly maxQueued: number
  /** `null` when a queued request may wait forever. */
  readonly queueTimeoutMillis: number | null
  /** Requests that got a slot. */
  readonly admitted: number
  /** Requests turned away, at once or after waiting. */
  readonly rejected: number
}

/**
 * A concurrency limit: run effects under it, read its stats, or put it in
 * front of an HTTP app with {@link middleware}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limiter {
  /** Shown in errors and stats. */
  readonly name: string
  /** Requests in flight at most. */
  readonly maxConcurrent: number
  /** Requests waiting for a slot at most. */
  readonly maxQueued: number
  /** How long a request may wait for a slot. */
  readonly queueTimeout: Duration.Duration
  /** What `Retry-After` tells a turned-away client. */
  readonly retryAfterSeconds: number
  /** Runs `self` holding a slot; the slot is freed however `self` ends. */
  readonly withPermit: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ConcurrencyLimitExceeded, R>
  /** Occupancy and counters. */
  readonly stats: Effect.Effect<Stats>
}

/**
 * The service tag of an application's concurrency limit.
 *
 * @since 0.1.0
 * @category tags
 */
export class ConcurrencyLimit extends Context.Tag("@cistern/platform/ConcurrencyLimit")<ConcurrencyLimit, Limiter>() {}

/**
 * The defaults: 100 in flight, 100 queued, 10 seconds in the queue,
 * `Retry-After: 1`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults: {
  readonly maxConcurrent: number
  readonly maxQueued: number
  readonly queueTimeout: Duration.Duration
  readonly retryAfter: Duration.Duration
} = internal.defaults

/**
 * The variables {@link config} reads unless renamed: `MAX_CONCURRENT_REQUESTS`,
 * `MAX_QUEUED_REQUESTS`, `QUEUE_TIMEOUT`, `RETRY_AFTER`.
 *
 * @since 0.1.0
 * @category constants
 */
export const variables: {
  readonly maxConcurrent: string
  readonly maxQueued: string
  readonly queueTimeout: string
  readonly retryAfter: string
} = internal.variables

/**
 * Makes a limit. Invalid options (a zero `maxConcurrent`, a negative
 * duration) are programmer errors: a defect with a `RangeError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<Limiter> = internal.make

/**
 * Reads {@link Options} from `Config`: `maxConcurrent` accepts `unbounded`,
 * `maxQueued` 0, durations `"30 seconds"` or milliseconds. Missing variables
 * take the defaults; invalid ones fail naming the variable and its value.
 *
 * @since 0.1.0
 * @category config
 */
export const config: (names?: {
  readonly maxConcurrent?: string | undefined
  readonly maxQueued?: string | undefined
  readonly queueTimeout?: string | undefined
  readonly retryAfter?: string | undefined
}) => Config.Config<Options> = internal.config

/**
 * Provides {@link ConcurrencyLimit}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<ConcurrencyLimit> => Layer.effect(ConcurrencyLimit, make(options))

/**
 * Provides {@link ConcurrencyLimit} with options read from `Config` (see
 * {@link config}); `defaults` given here apply where a variable is missing.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options>,
  defaults: Options = {}
): Layer.Layer<ConcurrencyLimit, ConfigError.ConfigError> =>
  Layer.effect(
    ConcurrencyLimit,
    Effect.flatMap(options, (read) =>
      make({
        name: read.name ?? defaults.name,
        maxConcurrent: read.maxConcurrent ?? defaults.maxConcurrent,
        maxQueued: read.maxQueued ?? defaults.maxQueued,
        queueTimeout: read.queueTimeout ?? defaults.queueTimeout,
        retryAfter: read.retryAfter ?? defaults.retryAfter
      })
    )
  )

/**
 * Runs `self` under `limiter`: fails with {@link ConcurrencyLimitExceeded}
 * when it is turned away.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withLimit: {
  (limiter: Limiter): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ConcurrencyLimitExceeded, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, limiter: Limiter): Effect.Effect<A, E | ConcurrencyLimitExceeded, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, limiter: Limiter) => limiter.withPermit(self))

/**
 * Runs `self` under the application's {@link ConcurrencyLimit}.
 *
 * @since 0.1.0
 * @category combinators
 */
export const limited = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E | ConcurrencyLimitExceeded, R | ConcurrencyLimit> =>
  Effect.flatMap(ConcurrencyLimit, (limiter) => limiter.withPermit(self))

/**
 * How the middleware answers a turned-away request.
 *
 * @since 0.1.0
 * @category models
 */
export interface MiddlewareOptions {
  /** 503 Service Unavailable (default) or 429 Too Many Requests; both carry `Retry-After`. */
  readonly status?: 503 | 429 | undefined
}

/**
 * An HTTP middleware that runs each request under `limiter`. A turned-away
 * request gets a JSON body (`{ _tag, reason, message, retryAfterSeconds }`)
 * and `Retry-After`. A streamed response holds its slot until its body ends
 * (or the client goes away); any other response until the handler returns.
 *
 * @since 0.1.0
 * @category middleware
 */
export const middleware: (limiter: Limiter, options?: MiddlewareOptions) => HttpMiddleware.HttpMiddleware = (
  limiter,
  options
) => internal.middleware(limiter as internal.Limiter, options)
