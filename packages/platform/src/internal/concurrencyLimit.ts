/** @internal */

import { PoolConfig } from "@cistern/pool"
import type { HttpApp, HttpMiddleware } from "@effect/platform"
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ConcurrencyLimitExceeded } from "../ConcurrencyLimit.js"

/** @internal */
export interface Options {
  readonly name?: string | undefined
  readonly maxConcurrent?: number | undefined
  readonly maxQueued?: number | undefined
  readonly queueTimeout?: Duration.DurationInput | undefined
  readonly retryAfter?: Duration.DurationInput | undefined
}

/** @internal */
export interface Stats {
  readonly name: string
  readonly inFlight: number
  readonly queued: number
  readonly maxConcurrent: number
  readonly maxQueued: number
  readonly queueTimeoutMillis: number | null
  readonly admitted: number
  readonly rejected: number
}

/** @internal */
export const defaults = {
  maxConcurrent: 100,
  maxQueued: 100,
  queueTimeout: Duration.seconds(10),
  retryAfter: Duration.seconds(1)
} as const

/** @internal */
export const variables = {
  maxConcurrent: "MAX_CONCURRENT_REQUESTS",
  maxQueued: "MAX_QUEUED_REQUESTS",
  queueTimeout: "QUEUE_TIMEOUT",
  retryAfter: "RETRY_AFTER"
} as const

interface Waiter {
  granted: boolean
  wake: (() => void) | undefined
}

const check = (name: string, value: number, min: number) => {
  if (!(value >= min) || (Number.isFinite(value) && !Number.isInteger(value))) {
    throw new RangeError(`ConcurrencyLimit: ${name} must be an integer >= ${min}, got ${value}`)
  }
}

/**
 * The limiter's state: a counter and a FIFO queue. A `Set` keeps insertion
 * order, so the head is the oldest waiter and leaving the queue is O(1).
 *
 * @internal
 */
export class Limiter {
  readonly name: string
  readonly maxConcurrent: number
  readonly maxQueued: number
  readonly queueTimeout: Duration.Duration
  readonly retryAfterSeconds: number
  inFlight = 0
  admitted = 0
  rejected = 0
  readonly queue = new Set<Waiter>()

  constructor(options: Options) {
    this.name = options.name ?? "requests"
    this.maxConcurrent = options.maxConcurrent ?? defaults.maxConcurrent
    this.maxQueued = options.maxQueued ?? defaults.maxQueued
    this.queueTimeout = Duration.decode(options.queueTimeout ?? defaults.queueTimeout)
    const retryAfter = Duration.decode(options.retryAfter ?? defaults.retryAfter)
    check("maxConcurrent", this.maxConcurrent, 1)
    check("maxQueued", this.maxQueued, 0)
    if (Duration.lessThan(this.queueTimeout, Duration.zero)) {
      throw new RangeError("ConcurrencyLimit: queueTimeout must not be negative")
    }
    // Retry-After is whole seconds (RFC 9110); never 0, which would invite a retry storm.
    this.retryAfterSeconds = Math.max(1, Math.ceil(Duration.toSeconds(retryAfter)))
  }

  /** Hands the permit to the oldest waiter, or frees it. */
  readonly release = (): void => {
    const next = this.queue.values().next()
    if (next.done) {
      this.inFlight--
      return
    }
    this.queue.delete(next.value)
    next.value.granted = true
    next.value.wake?.()
  }

  reject(reason: "queue-full" | "queue-timeout", waitedMillis: number): ConcurrencyLimitExceeded {
    this.rejected++
    return new ConcurrencyLimitExceeded({
      name: this.name,
      reason,
      maxConcurrent: this.maxConcurrent,
      maxQueued: this.maxQueued,
      waitedMillis,
      retryAfterSeconds: this.retryAfterSeconds
    })
  }

  /**
   * Takes a permit, waiting in the queue when all are taken. Whatever ends the
   * wait (timeout, interruption), a waiter leaves the queue, and a permit
   * handed to it in the same instant is passed on.
   */
  readonly acquire: Effect.Effect<void, ConcurrencyLimitExceeded> = Effect.suspend(() => {
    if (this.inFlight < this.maxConcurrent) {
      this.inFlight++
      this.admitted++
      return Effect.void
    }
    if (this.queue.size >= this.maxQueued) {
      return Effect.fail(this.reject("queue-full", 0))
    }
    // The wait is interruptible even where the caller is not (an
    // `acquireUseRelease`'s acquire, a server's handler): a caller that goes
    // away must leave the queue.
    return Effect.uninterruptible(
      Effect.suspend(() => {
        const waiter: Waiter = { granted: false, wake: undefined }
        this.queue.add(waiter)
        const wait = Effect.async<void>((resume) => {
          if (waiter.granted) return resume(Effect.void)
          waiter.wake = () => resume(Effect.void)
        })
        const bounded = Duration.isFinite(this.queueTimeout)
          ? Effect.timeoutFail(wait, {
              duration: this.queueTimeout,
              onTimeout: () => this.reject("queue-timeout", Duration.toMillis(this.queueTimeout))
            })
          : wait
        return Effect.interruptible(bounded).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              if (Exit.isSuccess(exit)) {
                this.admitted++
              } else if (waiter.granted) {
                this.release()
              } else {
                this.queue.delete(waiter)
              }
            })
          ),
          Effect.tapError(() =>
            Effect.annotateLogs(Effect.logDebug("queued request rejected after waiting"), {
              package: "@cistern/platform",
              module: "ConcurrencyLimit",
              limit: this.name
            })
          )
        )
      })
    )
  })

  readonly stats: Effect.Effect<Stats> = Effect.sync(() => ({
    name: this.name,
    inFlight: this.inFlight,
    queued: this.queue.size,
    maxConcurrent: this.maxConcurrent,
    maxQueued: this.maxQueued,
    queueTimeoutMillis: Duration.isFinite(this.queueTimeout) ? Duration.toMillis(this.queueTimeout) : null,
    admitted: this.admitted,
    rejected: this.rejected
  }))

  readonly withPermit = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | ConcurrencyLimitExceeded, R> =>
    Effect.acquireUseRelease(
      this.acquire,
      () => self,
      () => Effect.sync(this.release)
    )
}

/** @internal */
export const make = (options: Options = {}): Effect.Effect<Limiter> => Effect.sync(() => new Limiter(options))

/** @internal */
export const config = (
  names: { readonly [K in keyof typeof variables]?: string | undefined } = {}
): Config.Config<Options> =>
  Config.all({
    maxConcurrent: Config.option(PoolConfig.limit(names.maxConcurrent ?? variables.maxConcurrent)),
    maxQueued: Config.option(PoolConfig.count(names.maxQueued ?? variables.maxQueued)),
    queueTimeout: Config.option(PoolConfig.duration(names.queueTimeout ?? variables.queueTimeout)),
    retryAfter: Config.option(PoolConfig.duration(names.retryAfter ?? variables.retryAfter))
  }).pipe(
    Config.map((o) => ({
      maxConcurrent: Option.getOrUndefined(o.maxConcurrent),
      maxQueued: Option.getOrUndefined(o.maxQueued),
      queueTimeout: Option.getOrUndefined(o.queueTimeout),
      retryAfter: Option.getOrUndefined(o.retryAfter)
    }))
  )

/** @internal */
export interface MiddlewareOptions {
  readonly status?: 503 | 429 | undefined
}

/** @internal */
export const rejection = (error: ConcurrencyLimitExceeded, status: number): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.unsafeJson(
    { _tag: error._tag, reason: error.reason, message: error.message, retryAfterSeconds: error.retryAfterSeconds },
    { status, headers: { "retry-after": String(error.retryAfterSeconds) } }
  )

/**
 * Releases at most once: when a streamed body ends, or when the request's
 * scope closes (a body never consumed, a failed handler), whichever is first.
 */
const once = (f: () => void) => {
  let done = false
  return () => {
    if (!done) {
      done = true
      f()
    }
  }
}

/** @internal */
export const middleware =
  (limiter: Limiter, options: MiddlewareOptions = {}): HttpMiddleware.HttpMiddleware =>
  <E, R>(app: HttpApp.Default<E, R>): HttpApp.Default<E, R> =>
    // The server runs handlers uninterruptibly; the wait and the app are made
    // interruptible so that a client that goes away leaves the queue.
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.either(restore(limiter.acquire)), (admitted) => {
        if (admitted._tag === "Left") {
          return Effect.succeed(rejection(admitted.left, options.status ?? 503))
        }
        const release = once(limiter.release)
        let scoped = false
        return Effect.serviceOption(Scope.Scope).pipe(
          Effect.flatMap((scope) => {
            if (Option.isNone(scope)) return Effect.void
            scoped = true
            return Scope.addFinalizer(scope.value, Effect.sync(release))
          }),
          Effect.zipRight(Effect.interruptible(app)),
          Effect.map((response) => {
            if (response.body._tag !== "Stream") {
              // The server writes the response inside the request's scope, and a raw body (a Node
              // stream it pipes) is still flowing now: that scope's close releases the slot.
              if (!scoped) release()
              return response
            }
            const body = response.body
            return HttpServerResponse.setBody(
              response,
              HttpBody.stream(Stream.ensuring(body.stream, Effect.sync(release)), body.contentType, body.contentLength)
            )
          }),
          Effect.onExit((exit) => (Exit.isFailure(exit) ? Effect.sync(release) : Effect.void))
        )
      })
    )
