import type * as net from "node:net"
import * as KeyedPool from "@cistern/pool/KeyedPool"
import * as Effect from "effect/Effect"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { buildConnector, Client, type Dispatcher, errors } from "undici"
import type { ClientOptions, Connection, Options, UpstreamConnectError, UpstreamKey } from "../UpstreamPool.js"
import { open } from "./connect.js"
import { isConnectionError } from "./connectionError.js"
import { describeKey } from "./upstreamKey.js"

/**
 * What one request on a connection reports, for whoever leased it: the
 * `HttpClient` and `request` end their leases from these.
 */
export interface Exchange {
  onStart(controller: Dispatcher.DispatchController): void
  onEnd(): void
  onError(error: Error): void
}

const announcesClose = (headers: Record<string, string | Array<string> | undefined>): boolean => {
  const connection = headers.connection
  return typeof connection === "string" && /(^|,)\s*close\s*(,|$)/i.test(connection)
}

/**
 * Forwards undici's handler calls, watching each response on the wire (not
 * as its reader consumes it): a response that fails, or announces
 * `Connection: close`, makes the connection unfit, whoever leased it and
 * however that lease ends.
 */
class Observer implements Dispatcher.DispatchHandler {
  constructor(
    readonly handler: Dispatcher.DispatchHandler,
    readonly connection: ConnectionImpl,
    readonly exchange: Exchange | undefined
  ) {}
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.exchange?.onStart(controller)
    this.handler.onRequestStart?.(controller, context)
  }
  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    socket: import("node:stream").Duplex
  ): void {
    // An upgraded socket is the caller's now: it never comes back to the pool.
    this.connection.unfit()
    this.handler.onRequestUpgrade?.(controller, statusCode, headers as never, socket)
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    statusMessage?: string
  ): void {
    if (statusCode >= 200 && announcesClose(headers)) this.connection.reusable = false
    this.handler.onResponseStart?.(controller, statusCode, headers as never, statusMessage)
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk)
  }
  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | Array<string>>): void {
    this.connection.inFlight = false
    if (!this.connection.reusable) this.connection.unfit()
    this.exchange?.onEnd()
    this.handler.onResponseEnd?.(controller, trailers as never)
  }
  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.connection.inFlight = false
    this.connection.unfit()
    this.exchange?.onError(error)
    this.handler.onResponseError?.(controller, error)
  }
}

/**
 * One pooled connection: an undici `Client` bound to one socket, opened by
 * the pool. The client is given that socket once and never reconnects, so
 * the pool's item and the socket live and die together.
 */
export class ConnectionImpl implements Connection {
  readonly client: Client
  readonly dispatcher: Dispatcher
  /** The request in flight, if a lease is watching one. */
  exchange: Exchange | undefined = undefined
  /** Whether a request was sent and its response has not ended yet. */
  inFlight = false
  /** Cleared when the upstream said it will close, a response failed, or the socket went away. */
  reusable = true
  private handedOver = false
  private closing = false
  private invalidated = false

  constructor(
    readonly key: UpstreamKey,
    readonly socket: net.Socket,
    options: ClientOptions,
    private readonly pool: () => KeyedPool.KeyedPool<UpstreamKey, Connection, UpstreamConnectError> | undefined,
    private readonly runFork: (effect: Effect.Effect<void>) => unknown
  ) {
    // undici expects its connector to answer later, as a real connect does: answering in the same tick stalls it.
    const connect: buildConnector.connector = (_, callback) =>
      queueMicrotask(() => {
        if (this.handedOver || socket.destroyed) {
          callback(new errors.SocketError("a pooled connection is never reopened"), null)
        } else {
          this.handedOver = true
          callback(null, socket)
        }
      })
    this.client = new Client(key.origin, { ...options, connect, pipelining: 1, allowH2: false })
    // The client reports its socket errors to requests; this keeps an idle socket's error from being unhandled.
    this.client.on("connectionError", noop)
    socket.on("error", noop)
    // After undici's own "close" listeners (see `unfit`).
    socket.once("close", () => this.unfit())
    this.dispatcher = this.client.compose((dispatch) => (opts, handler) => {
      this.inFlight = true
      return dispatch(opts, new Observer(handler, this, this.exchange))
    })
  }

  /**
   * The connection must not carry another request: the pool destroys it now
   * if idle, or when its lease ends. Told to the pool after undici's current
   * callback returns — destroying the client inside its own socket events
   * would wait for events already emitted.
   */
  unfit(): void {
    this.reusable = false
    if (this.closing || this.invalidated) return
    this.invalidated = true
    queueMicrotask(() => this.runFork(this.invalidate))
  }

  /** Marks the connection unfit now, from Effect code (a lease's finalizer, before the lease ends). */
  get invalidate(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.reusable = false
      const pool = this.pool()
      return pool === undefined ? Effect.void : pool.invalidate(this)
    })
  }

  /** Whether a new request may be sent on this connection now. */
  get alive(): boolean {
    return this.reusable && !this.inFlight && !this.socket.destroyed && !this.client.destroyed && !this.client.closed
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }

  /**
   * The pool's finalizer: the only place a connection is closed. The socket
   * is closed at once (its file descriptor, synchronously); the client's own
   * bookkeeping (failing a request still running on it) finishes a tick
   * later without holding up the pool.
   */
  destroy(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.closing = true
      this.reusable = false
      this.socket.destroy()
      this.client.destroy().catch(noop)
    })
  }
}

const noop = () => {}

/** @internal */
export const make = (
  options: Options = {}
): Effect.Effect<KeyedPool.KeyedPool<UpstreamKey, Connection, UpstreamConnectError>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { connect, proxyConnect, client, validate, ...settings } = options
    const connector = buildConnector({ ...connect })
    const proxyConnector = buildConnector({ ...proxyConnect })
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const cell: { pool?: KeyedPool.KeyedPool<UpstreamKey, Connection, UpstreamConnectError> } = {}
    // An unfit connection (its socket closed by the upstream's keep-alive timeout, undici's own, a reset;
    // a response cut or announcing a close) leaves the pool at once if idle, or when its lease ends.
    const current = () => cell.pool
    const clientOptions: ClientOptions = {
      // Timeouts belong to Effect (`Effect.timeout`, the pool's `acquireTimeout`), as in `@effect/platform-node`.
      headersTimeout: 60 * 60 * 1000,
      bodyTimeout: 0,
      ...client
    }
    const pool = yield* KeyedPool.make<UpstreamKey, Connection, UpstreamConnectError, Scope.Scope>({
      name: "upstreams",
      ...settings,
      acquire: (key) =>
        Effect.acquireRelease(
          Effect.map(
            open(key, connector, proxyConnector),
            (socket) => new ConnectionImpl(key, socket, clientOptions, current, runFork)
          ),
          (connection) => connection.destroy()
        ),
      keyId: (key) => key.id,
      describeKey,
      isConnectionError: options.isConnectionError ?? isConnectionError,
      validate: (connection) =>
        (connection as ConnectionImpl).alive
          ? validate === undefined
            ? Effect.void
            : validate(connection)
          : Effect.fail(new errors.SocketError("the upstream closed this connection"))
    })
    cell.pool = pool
    return pool
  })
