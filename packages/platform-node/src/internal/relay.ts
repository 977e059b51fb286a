/** @internal */

import { Readable } from "node:stream"
import type * as KeyedPool from "@cistern/pool/KeyedPool"
import type * as PoolError from "@cistern/pool/PoolError"
import * as Headers from "@effect/platform/Headers"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type { Dispatcher } from "undici"
import type { Connection, RequestOptions } from "../UpstreamPool.js"
import { UpstreamRequestError } from "../UpstreamPool.js"
import type { Ending, Options } from "../UpstreamRelay.js"
import { UpstreamTimeout } from "../UpstreamRelay.js"
import { describeKey } from "./upstreamKey.js"
import type { ConnectionImpl } from "./upstreamPool.js"

const encoder = new TextEncoder()
const bytes = (chunk: string | Uint8Array): Uint8Array => (typeof chunk === "string" ? encoder.encode(chunk) : chunk)

const sseEvent = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`

const defaultTimeoutEvent = (maxDurationMillis: number) =>
  sseEvent("error", {
    error: { type: "stream_timeout", message: `the stream passed its maximum duration of ${maxDurationMillis} ms` }
  })

// Never the error itself: it may carry upstream addresses or credentials.
const defaultFailureEvent = () =>
  sseEvent("error", { error: { type: "upstream_error", message: "the upstream stream failed" } })

// The same series as `@cistern/platform`'s StreamLease: a dashboard counts streams however they are relayed.
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

const sseHeaders = Headers.fromInput({ "cache-control": "no-cache", "x-accel-buffering": "no" })

type Head = Exit.Exit<void, UpstreamRequestError | UpstreamTimeout>

/**
 * One relayed exchange: undici's handler for the upstream response and the
 * Node `Readable` the HTTP server pipes to the client, in one object. Each
 * upstream chunk is pushed as it arrives (the upstream is paused while the
 * client is slow), so a chunk costs what Node's own `pipe` costs: no fiber,
 * no `Stream` pull per chunk.
 */
class RelayBody extends Readable implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined = undefined
  status = 0
  contentType: string | undefined = undefined
  /** The upstream response ended whole: the connection can be reused. */
  complete = false
  /** How the body ended, once it did (undefined: cut by its reader, or never read). */
  ending: Ending | undefined = undefined
  failure: unknown = undefined
  /** Whether 2xx bodies get the configured timeout and failure events. */
  events = true
  private headed = false
  private onHead: ((head: Head) => void) | undefined = undefined
  private abortReason: Error | undefined = undefined

  constructor(
    readonly upstream: string,
    readonly onTimeout: "event" | "close",
    readonly onFailure: "event" | "close" | "fail",
    /** Built only when the deadline passes: most streams never need it. */
    readonly timeoutEvent: () => Uint8Array,
    readonly failureEvent: (error: unknown) => Uint8Array
  ) {
    super()
  }

  /** Resumes the caller once the upstream answered (or failed, or passed its deadline first). */
  awaitHead(resume: (head: Head) => void): void {
    this.onHead = resume
  }

  private settleHead(head: Head): void {
    const resume = this.onHead
    this.headed = true
    this.onHead = undefined
    resume?.(head)
  }

  /** Stops the upstream exchange (a no-op once it ended whole). */
  abortUpstream(reason: string): void {
    if (this.complete) return
    const error = new DOMException(reason, "AbortError")
    if (this.controller === undefined) this.abortReason = error
    else if (!this.controller.aborted) this.controller.abort(error)
  }

  /** The maximum duration passed: before the answer, a typed failure; during the body, its end. */
  deadline(maxDurationMillis: number): void {
    if (!this.headed) {
      this.ending = "timeout"
      this.abortUpstream("the stream passed its maximum duration")
      this.settleHead(Exit.fail(new UpstreamTimeout({ maxDurationMillis })))
      return
    }
    if (this.ending !== undefined || this.destroyed) return
    this.ending = "timeout"
    this.abortUpstream("the stream passed its maximum duration")
    if (this.events && this.onTimeout === "event") this.push(this.timeoutEvent())
    this.push(null)
  }

  // undici's handler

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.abortReason !== undefined) controller.abort(this.abortReason)
  }
  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>
  ): void {
    if (this.headed) return
    this.status = statusCode
    const contentType = headers["content-type"]
    this.contentType = Array.isArray(contentType) ? contentType[0] : contentType
    this.settleHead(Exit.void)
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.ending !== undefined || this.destroyed) return
    if (!this.push(chunk)) controller.pause()
  }
  onResponseEnd(): void {
    this.complete = true
    if (this.ending !== undefined || this.destroyed) return
    this.ending = "completed"
    this.push(null)
  }
  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (!this.headed) {
      this.ending ??= "failed"
      this.settleHead(Exit.fail(new UpstreamRequestError({ upstream: this.upstream, cause: error })))
      return
    }
    if (this.ending !== undefined || this.destroyed) return
    this.ending = "failed"
    this.failure = error
    if (!this.events || this.onFailure === "fail") {
      this.destroy(error)
      return
    }
    if (this.onFailure === "event") this.push(this.failureEvent(error))
    this.push(null)
  }

  // Node's Readable

  override _read(): void {
    if (this.controller?.paused) this.controller.resume()
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Cut by the reader (the client went away): the upstream exchange stops too.
    this.abortUpstream("the client went away")
    callback(error)
  }
}

/** @internal */
export const respond = <E>(
  pool: KeyedPool.KeyedPool<Connection["key"], Connection, E>,
  key: Connection["key"],
  request: RequestOptions,
  options: Options = {}
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  E | PoolError.PoolError | UpstreamRequestError | UpstreamTimeout
> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const format = options.format ?? "sse"
      const maxDuration = Duration.decode(options.maxDuration ?? Duration.infinity)
      const bounded = Duration.isFinite(maxDuration)
      const maxMillis = bounded ? Duration.toMillis(maxDuration) : Number.POSITIVE_INFINITY
      const outer = yield* Effect.serviceOption(Scope.Scope)
      const scope = Option.isSome(outer)
        ? yield* Scope.fork(outer.value, ExecutionStrategy.sequential)
        : yield* Scope.make(ExecutionStrategy.sequential)
      const runFork = Runtime.runFork(yield* Effect.runtime<never>())
      const upstream = describeKey(key)
      const body = new RelayBody(
        upstream,
        options.onTimeout ?? (format === "sse" ? "event" : "close"),
        options.onFailure ?? (format === "sse" ? "event" : "fail"),
        () => bytes((options.timeoutEvent ?? defaultTimeoutEvent)(maxMillis)),
        (error) => bytes((options.failureEvent ?? defaultFailureEvent)(error))
      )

      let reported = false
      const report = (ending: Ending): Effect.Effect<void> => {
        if (reported) return Effect.void
        reported = true
        return Metric.increment(endingCounters[ending])
      }

      const leased = Effect.gen(function* () {
        const connection = (yield* pool.get(key)) as ConnectionImpl
        const start = yield* Clock.currentTimeMillis
        yield* Metric.increment(active)
        // Runs before the lease ends (finalizers run last-in first-out): a response not yet
        // whole is cut, and its connection destroyed rather than given to anyone else. Added to the
        // scope itself (not `Effect.addFinalizer`, which diffs and patches the fiber's refs twice per
        // run): the scope is closed on the handler's runtime anyway.
        yield* Scope.addFinalizer(
          scope,
          Effect.suspend(() => {
            if (!body.destroyed) body.destroy()
            const ending = body.ending ?? "interrupted"
            const counted = Effect.zipRight(Metric.incrementBy(active, -1), report(ending))
            const ended =
              options.onEnd === undefined ? counted : Effect.zipRight(counted, options.onEnd(ending, connection))
            if (body.complete) return ended
            body.abortUpstream("the stream's lease ended")
            return Effect.zipRight(ended, connection.invalidate)
          })
        )
        if (bounded) {
          // The deadline sleeps on the Clock in a root fiber started on this (interruptible) fiber's
          // runtime and interrupted without waiting when the lease ends: cheaper than a child forked
          // into the scope, which the scope would supervise and await.
          const timer = Runtime.runFork(yield* Effect.runtime<never>())(
            Effect.zipRight(
              Effect.sleep(Duration.millis(Math.max(0, start + maxMillis - (yield* Clock.currentTimeMillis)))),
              Effect.sync(() => body.deadline(maxMillis))
            )
          )
          yield* Scope.addFinalizer(
            scope,
            Effect.sync(() => timer.unsafeInterruptAsFork(FiberId.none))
          )
        }
        connection.dispatcher.dispatch({ ...request, origin: key.origin } as Dispatcher.DispatchOptions, body)
        return yield* Effect.async<void, UpstreamRequestError | UpstreamTimeout>((resume) => {
          body.awaitHead(resume)
          return Effect.sync(() => body.abortUpstream("the request was interrupted"))
        })
      })

      yield* restore(Scope.extend(leased, scope)).pipe(
        Effect.onExit((exit) =>
          Exit.isFailure(exit)
            ? Effect.zipRight(
                Scope.close(scope, exit),
                // A lease that never started (pool timeout, open circuit) has no finalizer to tell.
                report(Exit.isInterrupted(exit) ? "interrupted" : (body.ending ?? "failed"))
              )
            : Effect.void
        )
      )

      // The lease ends once the body is closed: read to its end, ended early, or destroyed.
      body.once("close", () => {
        runFork(
          Scope.close(
            scope,
            body.ending === "failed"
              ? Exit.fail(new UpstreamRequestError({ upstream, cause: body.failure }))
              : Exit.void
          )
        )
      })

      const ok = body.status >= 200 && body.status < 300
      if (!ok) {
        // Not the stream the caller asked for: the upstream's answer goes on as it is, without events.
        body.events = false
        return HttpServerResponse.raw(body, {
          status: body.status,
          contentType: body.contentType ?? "application/octet-stream"
        })
      }
      const contentType = options.contentType ?? (format === "sse" ? "text/event-stream" : "application/octet-stream")
      const own = Headers.fromInput(options.headers ?? {})
      return HttpServerResponse.raw(body, {
        status: options.status ?? body.status,
        contentType,
        headers: format === "sse" ? Headers.merge(sseHeaders, own) : own
      })
    })
  )
