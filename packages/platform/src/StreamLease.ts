/**
 * Streams an upstream response to an HTTP client while holding a pool lease:
 * lease a connection, send the upstream request, stream its body as the
 * response (server-sent events or a chunked body). However the stream ends,
 * the lease ends with it:
 *
 * - the body completes: the connection goes back to the pool;
 * - the body fails, passes `maxDuration`, or the client disconnects (the HTTP
 *   server interrupts the handler's fiber): the connection is destroyed, since
 *   it was cut mid-body and cannot be reused.
 *
 * ```ts
 * import { StreamLease } from "@cistern/platform"
 * import type { KeyedPool } from "@cistern/pool"
 * import { HttpRouter } from "@effect/platform"
 * import { Context, Effect } from "effect"
 * import type { Scope, Stream } from "effect"
 *
 * // the application's own: a keyed pool of upstream clients, and the call that
 * // sends a chat request and answers with the upstream's body
 * interface UpstreamClient {
 *   readonly origin: string
 * }
 * class Upstreams extends Context.Tag("Upstreams")<Upstreams, KeyedPool.KeyedPool<string, UpstreamClient, Error>>() {}
 * declare const sendChat: (
 *   client: UpstreamClient
 * ) => Effect.Effect<Stream.Stream<Uint8Array, Error>, Error, Scope.Scope>
 *
 * const chat = HttpRouter.post(
 *   "/v1/chat/completions",
 *   Effect.flatMap(Upstreams, (pool) =>
 *     StreamLease.respond(pool, "https://llm.internal", (client) => sendChat(client), {
 *       format: "sse",
 *       maxDuration: "10 minutes" // then an SSE error event, and the lease is released
 *     })
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 */
import type { KeyedPool, PoolError } from "@cistern/pool"
import type * as Headers from "@effect/platform/Headers"
import type * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/streamLease.js"

/**
 * The upstream did not answer (its `send` did not return a body) within the
 * stream's `maxDuration`. Once the body has started, passing `maxDuration`
 * ends the stream cleanly instead (see {@link Options.onTimeout}).
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamTimeout extends Schema.TaggedError<StreamTimeout>("@cistern/platform/StreamTimeout")(
  "StreamTimeout",
  {
    maxDurationMillis: Schema.Number,
    phase: Schema.Literal("response")
  }
) {
  override get message(): string {
    return `the upstream did not answer within the stream's maximum duration of ${this.maxDurationMillis} ms`
  }
}

/**
 * How a leased stream ended: its body `completed` (the connection is reused),
 * `failed`, passed its maximum duration (`timeout`), or was `interrupted` (the
 * client disconnected). All but `completed` destroy the connection.
 *
 * @since 0.1.0
 * @category models
 */
export type Ending = "completed" | "failed" | "timeout" | "interrupted"

/**
 * How a leased stream is framed, bounded and ended.
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
   * SSE default), end (`close`), or let the failure reach the server, which
   * cuts the response (`fail`, the chunked default).
   */
  readonly onFailure?: "event" | "close" | "fail" | undefined
  /** The bytes written after `maxDuration`. Default: an SSE `error` event of type `stream_timeout`. */
  readonly timeoutEvent?: ((maxDurationMillis: number) => string | Uint8Array) | undefined
  /** The bytes written when the body fails. Default: an SSE `error` event of type `upstream_error`, never the error's text. */
  readonly failureEvent?: ((error: unknown) => string | Uint8Array) | undefined
  /** The response's status. Default 200. */
  readonly status?: number | undefined
  /** Extra response headers. */
  readonly headers?: Headers.Input | undefined
  /** Default `text/event-stream` (SSE) or `application/octet-stream` (chunked). */
  readonly contentType?: string | undefined
  /** Called once, when the lease has ended or is about to, with how the stream ended. */
  readonly onEnd?: ((ending: Ending) => Effect.Effect<void>) | undefined
}

/**
 * Sends the upstream request on a leased item and answers with the body to
 * stream. It runs in the lease's scope: whatever it acquires there (the
 * request, an abort signal) is released before the lease.
 *
 * The body must stop at once when interrupted, even while a read is pending:
 * on Node, `NodeStream.fromReadable` (which destroys the readable) rather
 * than `Stream.fromAsyncIterable` (whose iterator waits for the pending read,
 * so a hung upstream would hold the lease).
 *
 * @since 0.1.0
 * @category models
 */
export type Send<A, E2, R> = (item: A) => Effect.Effect<Stream.Stream<Uint8Array, E2, R>, E2, R | Scope.Scope>

/**
 * Leases an item of `key`, runs `send` on it and answers with a streaming
 * response of the body it returns. Fails (and releases the lease at once)
 * when leasing or `send` fails, or `send` takes longer than `maxDuration`.
 *
 * The lease lives in a child of the caller's scope when there is one, so a
 * response that is never written is released with the request. Outside an
 * HTTP server without a scope, run the response's body.
 *
 * @since 0.1.0
 * @category constructors
 */
export const respond: <K, A, E, E2, R>(
  pool: KeyedPool.KeyedPool<K, A, E>,
  key: K,
  send: Send<A, E2, R>,
  options?: Options
) => Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  E | E2 | PoolError.PoolError | StreamTimeout,
  Exclude<R, Scope.Scope>
> = internal.respond

/**
 * The same lease rules as {@link respond}, as a `Stream` of the body's bytes
 * (for a server that frames its own responses, or a non-HTTP consumer).
 *
 * @since 0.1.0
 * @category constructors
 */
export const stream: <K, A, E, E2, R>(
  pool: KeyedPool.KeyedPool<K, A, E>,
  key: K,
  body: (item: A) => Stream.Stream<Uint8Array, E2, R>,
  options?: Options
) => Stream.Stream<Uint8Array, E | E2 | PoolError.PoolError | StreamTimeout, Exclude<R, Scope.Scope>> = internal.stream

/**
 * A pool's streaming helper with its own defaults (say, a `maxDuration` for
 * every stream of the pool); each call may override them per route.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamLease<K, A, E> {
  /** The pool the leases come from. */
  readonly pool: KeyedPool.KeyedPool<K, A, E>
  /** Options every call starts from; a call's own options override them field by field. */
  readonly defaults: Options
  /** {@link respond} on this pool, with its defaults. */
  readonly respond: <E2, R>(
    key: K,
    send: Send<A, E2, R>,
    options?: Options
  ) => Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    E | E2 | PoolError.PoolError | StreamTimeout,
    Exclude<R, Scope.Scope>
  >
  /** {@link stream} on this pool, with its defaults. */
  readonly stream: <E2, R>(
    key: K,
    body: (item: A) => Stream.Stream<Uint8Array, E2, R>,
    options?: Options
  ) => Stream.Stream<Uint8Array, E | E2 | PoolError.PoolError | StreamTimeout, Exclude<R, Scope.Scope>>
}

/**
 * Binds a pool and its defaults.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <K, A, E>(pool: KeyedPool.KeyedPool<K, A, E>, defaults: Options = {}): StreamLease<K, A, E> => ({
  pool,
  defaults,
  respond: (key, send, options) => internal.respond(pool, key, send, internal.merge(defaults, options)),
  stream: (key, body, options) => internal.stream(pool, key, body, internal.merge(defaults, options))
})

/**
 * Formats one server-sent event: `event: <event>\ndata: <JSON>\n\n`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sseEvent: (event: string, data: unknown) => string = internal.sseEvent
