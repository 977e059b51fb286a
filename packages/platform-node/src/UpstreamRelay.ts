/**
 * Relays an upstream's streamed answer to an HTTP client over a pooled
 * connection, the way an LLM relay streams chat completions: lease a
 * connection from an {@link UpstreamPool}, send the request, and answer with
 * the upstream's body. The body is piped by Node itself (a `Readable` the
 * `@effect/platform-node` server pipes to the client; undici pauses the
 * upstream while the client is slow), so a token costs no fiber and no
 * `Stream` pull: the cheap path for many small chunks. For a body that must
 * be transformed on its way, use `StreamLease` from `@cistern/platform`.
 *
 * However the body ends, the lease ends with it: read whole (the connection
 * goes back to the pool), failed, past `maxDuration` (an SSE `error` event,
 * then the end), or cut because the client went away (the server interrupts
 * the handler, the pipe is destroyed): a connection cut mid-body is destroyed,
 * never reused. A response that is never written is released with the
 * request's scope.
 *
 * ```ts
 * import { UpstreamPool, UpstreamRelay } from "@cistern/platform-node"
 * import { HttpRouter, HttpServerRequest } from "@effect/platform"
 * import { Effect } from "effect"
 *
 * const upstream = UpstreamPool.key("http://127.0.0.1:8081")
 *
 * export const chat = HttpRouter.post(
 *   "/v1/chat/completions",
 *   Effect.gen(function* () {
 *     const pool = yield* UpstreamPool.UpstreamPool
 *     const body = yield* (yield* HttpServerRequest.HttpServerRequest).text
 *     return yield* UpstreamRelay.respond(
 *       pool,
 *       upstream,
 *       { method: "POST", path: "/v1/chat/completions", headers: { "content-type": "application/json" }, body },
 *       { format: "sse", maxDuration: "10 minutes" }
 *     )
 *   }).pipe(Effect.orDie)
 * )
 * ```
 *
 * @since 0.1.0
 */
import type * as KeyedPool from "@cistern/pool/KeyedPool"
import type * as PoolError from "@cistern/pool/PoolError"
import type * as Headers from "@effect/platform/Headers"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as internal from "./internal/relay.js"
import type { Connection, RequestOptions, UpstreamKey, UpstreamRequestError } from "./UpstreamPool.js"

/**
 * The upstream did not answer (no status line and headers) within the
 * stream's `maxDuration`. Once the body has started, passing `maxDuration`
 * ends the body cleanly instead (see {@link Options.onTimeout}).
 *
 * @since 0.1.0
 * @category errors
 */
export class UpstreamTimeout extends Schema.TaggedError<UpstreamTimeout>("@cistern/platform-node/UpstreamTimeout")(
  "UpstreamTimeout",
  { maxDurationMillis: Schema.Number }
) {
  override get message(): string {
    return `the upstream did not answer within the stream's maximum duration of ${this.maxDurationMillis} ms`
  }
}

/**
 * How a relayed body ended: read whole (`completed`, the connection is
 * reused), `failed` upstream, passed its maximum duration (`timeout`), or
 * `interrupted` (the client went away, or the response was never written).
 * All but `completed` destroy the connection.
 *
 * @since 0.1.0
 * @category models
 */
export type Ending = "completed" | "failed" | "timeout" | "interrupted"

/**
 * How a relayed body is framed, bounded and ended. They apply to a 2xx
 * answer; any other status is passed on as it is (its status, content type
 * and body, no events), still within `maxDuration`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `sse` (`text/event-stream`, no caching) or `chunked` (a plain streamed body). Default `sse`. */
  readonly format?: "sse" | "chunked" | undefined
  /** From the lease to the end of the body. Default: unbounded. */
  readonly maxDuration?: Duration.DurationInput | undefined
  /** After `maxDuration`: write `timeoutEvent` and end (`event`, the SSE default) or just end (`close`, the chunked default). */
  readonly onTimeout?: "event" | "close" | undefined
  /**
   * When the upstream body fails: write `failureEvent` and end (`event`, the
   * SSE default), end (`close`), or cut the response (`fail`, the chunked
   * default).
   */
  readonly onFailure?: "event" | "close" | "fail" | undefined
  /** The bytes written after `maxDuration`. Default: an SSE `error` event of type `stream_timeout`. */
  readonly timeoutEvent?: ((maxDurationMillis: number) => string | Uint8Array) | undefined
  /** The bytes written when the body fails. Default: an SSE `error` event of type `upstream_error`, never the error's text. */
  readonly failureEvent?: ((error: unknown) => string | Uint8Array) | undefined
  /** The response's status. Default: the upstream's. */
  readonly status?: number | undefined
  /** Extra response headers. */
  readonly headers?: Headers.Input | undefined
  /** Default `text/event-stream` (SSE) or `application/octet-stream` (chunked). */
  readonly contentType?: string | undefined
  /**
   * Called once per lease as it ends, before the connection goes back to the
   * pool (or is destroyed), with how the body ended and the connection: for
   * example to invalidate it by a rule of the application's own.
   */
  readonly onEnd?: ((ending: Ending, connection: Connection) => Effect.Effect<void>) | undefined
}

/**
 * Leases a connection of `key`, sends `request` on it and answers with a
 * response whose body is the upstream's, piped to the client as it arrives.
 * Fails (and releases the lease at once) when leasing fails, the request
 * fails before the upstream answers (a connection error counts for the
 * key's circuit breaker), or no answer comes within `maxDuration`.
 *
 * The lease lives in a child of the caller's scope when there is one (an
 * HTTP request's), so a response that is never written is released with
 * the request. The response's body is a Node `Readable`: serve it with
 * `@effect/platform-node`'s HTTP server.
 *
 * @since 0.1.0
 * @category constructors
 */
export const respond: <E>(
  pool: KeyedPool.KeyedPool<UpstreamKey, Connection, E>,
  key: UpstreamKey,
  request: RequestOptions,
  options?: Options
) => Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  E | PoolError.PoolError | UpstreamRequestError | UpstreamTimeout
> = internal.respond
