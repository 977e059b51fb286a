import * as Cookies from "@effect/platform/Cookies"
import * as Headers from "@effect/platform/Headers"
import type * as Body from "@effect/platform/HttpBody"
import * as Client from "@effect/platform/HttpClient"
import * as ClientError from "@effect/platform/HttpClientError"
import type * as ClientRequest from "@effect/platform/HttpClientRequest"
import * as ClientResponse from "@effect/platform/HttpClientResponse"
import * as IncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as UrlParams from "@effect/platform/UrlParams"
import * as NodeStream from "@effect/platform-node/NodeStream"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Inspectable from "effect/Inspectable"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Dispatcher } from "undici"
import type { ClientOptions as HttpClientOptions } from "../UpstreamHttpClient.js"
import type { UpstreamKey } from "../UpstreamPool.js"
import { UpstreamPool } from "../UpstreamPool.js"
import { isConnectionError } from "./connectionError.js"
import * as upstreamKey from "./upstreamKey.js"
import type { ConnectionImpl, Exchange } from "./upstreamPool.js"

const noop = () => {}

/**
 * A lease on one connection for one request: it ends exactly once, when the
 * response has arrived whole (read by the caller or buffered for it), when
 * the request or its body fails, or when the caller aborts (its scope closed,
 * the response was dropped, the fiber was interrupted). A connection that did
 * not finish its response cleanly is destroyed, never reused.
 */
class Lease implements Exchange {
  private ended = false
  private complete = false
  private controller: Dispatcher.DispatchController | undefined = undefined
  private abortReason: Error | undefined = undefined

  constructor(
    readonly connection: ConnectionImpl,
    readonly scope: Scope.CloseableScope,
    readonly runFork: (effect: Effect.Effect<void>) => unknown
  ) {}

  onStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.abortReason !== undefined) controller.abort(this.abortReason)
  }

  onEnd(): void {
    this.complete = true
    this.end(undefined)
  }

  onError(error: Error): void {
    this.end(error)
  }

  /** Aborts the request if it is still running (the caller was interrupted). */
  abort(): void {
    if (this.ended || this.complete) return
    const reason = new DOMException("the request was interrupted", "AbortError")
    if (this.controller !== undefined) this.controller.abort(reason)
    else this.abortReason = reason
  }

  end(error: unknown): void {
    if (this.ended) return
    this.ended = true
    // Released once undici has finished the call it is in: it closes a socket it will not reuse right
    // after reporting the end of a response, and pool finalizers must not run inside its callbacks.
    queueMicrotask(() => this.release(error))
  }

  private release(error: unknown): void {
    const connection = this.connection
    if (connection.exchange === this) connection.exchange = undefined
    const exit: Exit.Exit<void, unknown> = error === undefined ? Exit.void : Exit.fail(error)
    if (error === undefined && this.complete && connection.alive) {
      this.runFork(Scope.close(this.scope, exit))
    } else {
      // Cut short, failed, or the upstream is closing it: the connection is destroyed when the lease ends.
      connection.reusable = false
      this.runFork(Effect.zipRight(connection.invalidate, Scope.close(this.scope, exit)))
    }
  }
}

const convertBody = (
  body: Body.HttpBody
): Effect.Effect<Exclude<Dispatcher.DispatchOptions["body"], undefined>, never, never> => {
  switch (body._tag) {
    case "Empty":
      return Effect.succeed(null)
    case "Uint8Array":
    case "Raw":
      return Effect.succeed(body.body as Uint8Array)
    case "FormData":
      return Effect.succeed(body.formData as never)
    case "Stream":
      return NodeStream.toReadable(body.stream)
  }
}

const replayable = (body: Body.HttpBody): boolean => body._tag !== "Stream"

/** @internal */
export const make = (options: HttpClientOptions = {}): Effect.Effect<Client.HttpClient, never, UpstreamPool> =>
  Effect.gen(function* () {
    const pool = yield* UpstreamPool
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const route = router(options)
    // Per request only when set here: otherwise the pool's client options decide (an hour and none by default).
    const timeouts: { headersTimeout?: number; bodyTimeout?: number } = {}
    if (options.headersTimeout !== undefined) timeouts.headersTimeout = options.headersTimeout
    if (options.bodyTimeout !== undefined) timeouts.bodyTimeout = options.bodyTimeout
    const retry =
      options.retry === undefined || options.retry === false
        ? undefined
        : options.retry === true
          ? defaultRetry
          : options.retry

    const send = (
      request: ClientRequest.HttpClientRequest,
      url: URL,
      signal: AbortSignal
    ): Effect.Effect<ClientResponse.HttpClientResponse, ClientError.HttpClientError> => {
      let key: UpstreamKey
      try {
        key = route(request, url)
      } catch (cause) {
        return Effect.fail(new ClientError.RequestError({ request, reason: "InvalidUrl", cause }))
      }
      return Effect.flatMap(convertBody(request.body), (body) =>
        Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Scope.make(), (scope) =>
            Effect.matchCauseEffect(restore(Scope.extend(pool.get(key), scope)), {
              onFailure: (cause) =>
                Effect.zipRight(
                  Scope.close(scope, Exit.failCause(cause)),
                  Cause.isInterruptedOnly(cause)
                    ? Effect.failCause(cause as Cause.Cause<never>)
                    : Effect.fail(
                        new ClientError.RequestError({
                          request,
                          reason: "Transport",
                          cause: Cause.squash(cause),
                          description: describe(Cause.squash(cause))
                        })
                      )
                ),
              onSuccess: (connection) => {
                const lease = new Lease(connection as ConnectionImpl, scope, runFork)
                ;(connection as ConnectionImpl).exchange = lease
                return restore(
                  Effect.async<ClientResponse.HttpClientResponse, ClientError.RequestError>((resume) => {
                    connection.dispatcher.request(
                      {
                        method: request.method,
                        path: url.pathname + url.search + url.hash,
                        headers: request.headers,
                        body,
                        signal,
                        ...timeouts
                      },
                      (error, data) => {
                        if (error !== null) {
                          lease.end(error)
                          resume(
                            Effect.fail(
                              new ClientError.RequestError({
                                request,
                                reason: "Transport",
                                cause: error,
                                description: error.message
                              })
                            )
                          )
                        } else {
                          resume(Effect.succeed(new ResponseImpl(request, data)))
                        }
                      }
                    )
                    return Effect.sync(() => lease.abort())
                  })
                )
              }
            })
          )
        )
      )
    }

    return Client.make((request, url, signal) => {
      const once = send(request, url, signal)
      return retry === undefined || !replayable(request.body)
        ? once
        : Effect.retry(once, {
            schedule: retry,
            while: (error) => error._tag === "RequestError" && isConnectionError(error)
          })
    })
  })

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(3))
)

/** Builds the key of each request from the options (proxy, credential). */
const router = (options: HttpClientOptions) => {
  const { proxy, credential } = options
  if (proxy === undefined && credential === undefined) {
    // The common case: one key per origin, made once.
    const keys = new Map<string, UpstreamKey>()
    return (_: ClientRequest.HttpClientRequest, url: URL): UpstreamKey => {
      let key = keys.get(url.origin)
      if (key === undefined) {
        if (keys.size >= 1024) keys.clear()
        key = upstreamKey.make(url.origin)
        keys.set(url.origin, key)
      }
      return key
    }
  }
  return (request: ClientRequest.HttpClientRequest, url: URL): UpstreamKey =>
    upstreamKey.make(url.origin, {
      proxy: typeof proxy === "function" ? proxy(request, url) : proxy,
      credential: credential?.(request, url)
    })
}

class ResponseImpl extends Inspectable.Class implements ClientResponse.HttpClientResponse {
  readonly [IncomingMessage.TypeId]: IncomingMessage.TypeId
  readonly [ClientResponse.TypeId]: ClientResponse.TypeId

  constructor(
    readonly request: ClientRequest.HttpClientRequest,
    readonly source: Dispatcher.ResponseData
  ) {
    super()
    this[IncomingMessage.TypeId] = IncomingMessage.TypeId
    this[ClientResponse.TypeId] = ClientResponse.TypeId
    source.body.on("error", noop)
  }

  get status(): number {
    return this.source.statusCode
  }

  private cachedCookies?: Cookies.Cookies
  get cookies(): Cookies.Cookies {
    if (this.cachedCookies !== undefined) return this.cachedCookies
    const header = this.source.headers["set-cookie"]
    return (this.cachedCookies =
      header === undefined ? Cookies.empty : Cookies.fromSetCookie(Array.isArray(header) ? header : [header]))
  }

  get headers(): Headers.Headers {
    return Headers.fromInput(this.source.headers as Record<string, string | ReadonlyArray<string>>)
  }

  get remoteAddress(): Option.Option<string> {
    return Option.none()
  }

  private decodeError(cause: unknown): ClientError.ResponseError {
    return new ClientError.ResponseError({ request: this.request, response: this, reason: "Decode", cause })
  }

  get stream(): Stream.Stream<Uint8Array, ClientError.ResponseError> {
    return NodeStream.fromReadable(
      () => this.source.body,
      (cause) => this.decodeError(cause)
    )
  }

  get json(): Effect.Effect<unknown, ClientError.ResponseError> {
    return Effect.tryMap(this.text, {
      try: (text) => (text === "" ? null : (JSON.parse(text) as unknown)),
      catch: (cause) => this.decodeError(cause)
    })
  }

  private textBody?: Effect.Effect<string, ClientError.ResponseError>
  get text(): Effect.Effect<string, ClientError.ResponseError> {
    return (this.textBody ??= Effect.tryPromise({
      try: () => this.source.body.text(),
      catch: (cause) => this.decodeError(cause)
    }).pipe(Effect.cached, Effect.runSync))
  }

  get urlParamsBody(): Effect.Effect<UrlParams.UrlParams, ClientError.ResponseError> {
    return Effect.flatMap(this.text, (text) =>
      Effect.try({
        try: () => UrlParams.fromInput(new URLSearchParams(text)),
        catch: (cause) => this.decodeError(cause)
      })
    )
  }

  private formDataBody?: Effect.Effect<FormData, ClientError.ResponseError>
  get formData(): Effect.Effect<FormData, ClientError.ResponseError> {
    return (this.formDataBody ??= Effect.tryPromise({
      try: () => this.source.body.formData() as Promise<FormData>,
      catch: (cause) => this.decodeError(cause)
    }).pipe(Effect.cached, Effect.runSync))
  }

  private arrayBufferBody?: Effect.Effect<ArrayBuffer, ClientError.ResponseError>
  get arrayBuffer(): Effect.Effect<ArrayBuffer, ClientError.ResponseError> {
    return (this.arrayBufferBody ??= Effect.tryPromise({
      try: () => this.source.body.arrayBuffer(),
      catch: (cause) => this.decodeError(cause)
    }).pipe(Effect.cached, Effect.runSync))
  }

  toJSON(): unknown {
    return IncomingMessage.inspect(this, {
      _id: "@effect/platform/HttpClientResponse",
      request: this.request.toJSON(),
      status: this.status
    })
  }
}
