/** @internal */

import type { KeyedPool, PoolError } from "@cistern/pool"
import * as Headers from "@effect/platform/Headers"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import { StreamTimeout } from "../StreamLease.js"

/** @internal */
export type Ending = "completed" | "failed" | "timeout" | "interrupted"

/** @internal */
export interface Options {
  readonly format?: "sse" | "chunked" | undefined
  readonly maxDuration?: Duration.DurationInput | undefined
  readonly onTimeout?: "event" | "close" | undefined
  readonly onFailure?: "event" | "close" | "fail" | undefined
  readonly timeoutEvent?: ((maxDurationMillis: number) => string | Uint8Array) | undefined
  readonly failureEvent?: ((error: unknown) => string | Uint8Array) | undefined
  readonly status?: number | undefined
  readonly headers?: Headers.Input | undefined
  readonly contentType?: string | undefined
  readonly onEnd?: ((ending: Ending) => Effect.Effect<void>) | undefined
}

const encoder = new TextEncoder()
const bytes = (chunk: string | Uint8Array): Uint8Array => (typeof chunk === "string" ? encoder.encode(chunk) : chunk)

/** @internal */
export const sseEvent = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const defaultTimeoutEvent = (maxDurationMillis: number) =>
  sseEvent("error", {
    error: {
      type: "stream_timeout",
      message: `the stream passed its maximum duration of ${maxDurationMillis} ms`
    }
  })

// Never the error itself: it may carry upstream addresses or credentials.
const defaultFailureEvent = () =>
  sseEvent("error", { error: { type: "upstream_error", message: "the upstream stream failed" } })

const endings = Metric.counter("cistern_stream_leases_total", {
  description: "Streams that held a pool lease, by how they ended",
  incremental: true
})
const active = Metric.gauge("cistern_stream_leases_active", {
  description: "Streams holding a pool lease now"
})
const endingCounters: Record<Ending, Metric.Metric.Counter<number>> = {
  completed: Metric.tagged(endings, "ending", "completed"),
  failed: Metric.tagged(endings, "ending", "failed"),
  timeout: Metric.tagged(endings, "ending", "timeout"),
  interrupted: Metric.tagged(endings, "ending", "interrupted")
}

/** @internal */
export const merge = (defaults: Options, options: Options | undefined): Options =>
  options === undefined ? defaults : { ...defaults, ...stripUndefined(options) }

const stripUndefined = (options: Options): Options => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(options)) if (v !== undefined) out[k] = v
  return out as Options
}

/**
 * Leases an item of `key` in a scope of its own, runs `send` in that scope,
 * and returns the body it answers with, bound to the lease: the lease ends
 * when the body completes, fails, passes `maxDuration` or is interrupted, and
 * the item is invalidated unless the body completed.
 *
 * The lease's scope is a child of the caller's scope when there is one (an
 * HTTP request's), so a body that is never run is released with the request.
 *
 * @internal
 */
export const open = <K, A, E, E2, R>(
  pool: KeyedPool.KeyedPool<K, A, E>,
  key: K,
  send: (item: A) => Effect.Effect<Stream.Stream<Uint8Array, E2, R>, E2, R | Scope.Scope>,
  options: Options
): Effect.Effect<
  Stream.Stream<Uint8Array, E2, never>,
  E | E2 | PoolError.PoolError | StreamTimeout,
  Exclude<R, Scope.Scope>
> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const format = options.format ?? "sse"
      const maxDuration = Duration.decode(options.maxDuration ?? Duration.infinity)
      const bounded = Duration.isFinite(maxDuration)
      const maxMillis = Duration.toMillis(maxDuration)
      const onTimeout = options.onTimeout ?? (format === "sse" ? "event" : "close")
      const onFailure = options.onFailure ?? (format === "sse" ? "event" : "fail")
      const outer = yield* Effect.serviceOption(Scope.Scope)
      const scope = Option.isSome(outer)
        ? yield* Scope.fork(outer.value, ExecutionStrategy.sequential)
        : yield* Scope.make(ExecutionStrategy.sequential)
      const context = yield* Effect.context<Exclude<R, Scope.Scope>>()
      let start = 0
      let completed = false
      let ending: Ending | undefined

      // Finalizers run last-in first-out: `send`'s own resources (the upstream
      // request) first, then the invalidation of a cut item, then the lease.
      const leased = Effect.gen(function* () {
        const item = yield* pool.get(key)
        start = yield* Clock.currentTimeMillis
        yield* Effect.addFinalizer(() => (completed ? Effect.void : pool.invalidate(item)))
        yield* Metric.increment(active)
        yield* Effect.addFinalizer(() => Metric.incrementBy(active, -1))
        const sent = send(item)
        return yield* bounded
          ? Effect.timeoutFail(sent, {
              duration: maxDuration,
              onTimeout: () => new StreamTimeout({ maxDurationMillis: maxMillis, phase: "response" })
            })
          : sent
      })
      const body = yield* restore(Scope.extend(leased, scope)).pipe(
        Effect.provide(context),
        Effect.onExit((exit) =>
          Exit.isFailure(exit)
            ? Effect.zipRight(
                report(
                  Exit.isInterrupted(exit)
                    ? "interrupted"
                    : Option.exists(Cause.failureOption(exit.cause), (e) => e instanceof StreamTimeout)
                      ? "timeout"
                      : "failed",
                  options
                ),
                Scope.close(scope, exit)
              )
            : Effect.void
        )
      )

      const marked = Stream.concat(
        Stream.provideContext(body, context as Context.Context<R>),
        Stream.execute(
          Effect.sync(() => {
            completed = true
          })
        )
      )
      const limited = bounded ? deadline(marked, scope, start + maxMillis) : marked
      const afterTimeout = Stream.concat(
        limited,
        Stream.suspend(() => {
          if (completed) return Stream.empty
          ending = "timeout"
          return onTimeout === "event"
            ? Stream.make(bytes((options.timeoutEvent ?? defaultTimeoutEvent)(maxMillis)))
            : Stream.empty
        })
      )
      const afterFailure =
        onFailure === "fail"
          ? afterTimeout
          : Stream.catchAll(afterTimeout, (error) => {
              ending = "failed"
              return onFailure === "event"
                ? Stream.make(bytes((options.failureEvent ?? defaultFailureEvent)(error)))
                : Stream.empty
            })
      return Stream.ensuringWith(afterFailure, (exit) => {
        const how: Ending =
          ending ??
          (completed
            ? "completed"
            : Exit.isSuccess(exit)
              ? "interrupted"
              : Cause.isInterruptedOnly(exit.cause)
                ? "interrupted"
                : "failed")
        return Effect.zipRight(report(how, options), Scope.close(scope, exit))
      })
    })
  )

/**
 * Ends `body` at `deadlineMillis` even when it hangs mid-read. The body runs
 * in a fiber of the lease's scope feeding a small queue, and a timer fiber
 * interrupts it at the deadline: per element this costs a queue hand-off,
 * where `Stream.interruptAfter` races every pull (ten times slower on a
 * token stream).
 */
const deadline = <E>(
  body: Stream.Stream<Uint8Array, E>,
  scope: Scope.Scope,
  deadlineMillis: number
): Stream.Stream<Uint8Array, E> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const queue = yield* Queue.bounded<Take.Take<Uint8Array, E>>(16)
      const producer = yield* Effect.forkIn(Stream.runIntoQueue(body, queue), scope)
      const now = yield* Clock.currentTimeMillis
      yield* Effect.sleep(Duration.millis(Math.max(0, deadlineMillis - now))).pipe(
        Effect.zipRight(Fiber.interrupt(producer)),
        Effect.zipRight(Queue.offer(queue, Take.end)),
        Effect.forkIn(scope)
      )
      return Stream.flattenTake(Stream.fromQueue(queue))
    })
  )

const report = (ending: Ending, options: Options): Effect.Effect<void> => {
  const counted = Metric.increment(endingCounters[ending])
  return options.onEnd === undefined ? counted : Effect.zipRight(counted, options.onEnd(ending))
}

/** @internal */
export const respond = <K, A, E, E2, R>(
  pool: KeyedPool.KeyedPool<K, A, E>,
  key: K,
  send: (item: A) => Effect.Effect<Stream.Stream<Uint8Array, E2, R>, E2, R | Scope.Scope>,
  options: Options = {}
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  E | E2 | PoolError.PoolError | StreamTimeout,
  Exclude<R, Scope.Scope>
> =>
  Effect.map(open(pool, key, send, options), (body) => {
    const sse = (options.format ?? "sse") === "sse"
    const contentType = options.contentType ?? (sse ? "text/event-stream" : "application/octet-stream")
    const own = Headers.fromInput(options.headers ?? {})
    const headers = sse
      ? Headers.merge(Headers.fromInput({ "cache-control": "no-cache", "x-accel-buffering": "no" }), own)
      : own
    return HttpServerResponse.stream(body, { status: options.status ?? 200, contentType, headers })
  })

/** @internal */
export const stream = <K, A, E, E2, R>(
  pool: KeyedPool.KeyedPool<K, A, E>,
  key: K,
  body: (item: A) => Stream.Stream<Uint8Array, E2, R>,
  options: Options = {}
): Stream.Stream<Uint8Array, E | E2 | PoolError.PoolError | StreamTimeout, Exclude<R, Scope.Scope>> =>
  Stream.unwrapScoped(open(pool, key, (item: A) => Effect.succeed(body(item)), options))
