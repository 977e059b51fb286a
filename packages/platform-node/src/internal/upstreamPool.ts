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
 * `HttpClient` ends its lease from these.
 */
export interface Exchange {
  onStart(controller: Dispatcher.DispatchController): void
  onHeaders(statusCode: number, headers: Record<string, string | Array<string> | undefined>): void
  onEnd(): void
  onError(error: Error): void
}

/**
 * Forwards undici's handler calls and tells the exchange how the request
 * went. It sits between the client and undici's own request handler, so it
 * sees the end of the response on the wire, not when the caller reads it.
 */
class Observer implements Dispatcher.DispatchHandler {
  constructor(
    readonly handler: Dispatcher.DispatchHandler,
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
    this.handler.onRequestUpgrade?.(controller, statusCode, headers as never, socket)
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | Array<string> | undefined>,
    statusMessage?: string
  ): void {
    this.exchange?.onHeaders(statusCode, headers)
    this.handler.onResponseStart?.(controller, statusCode, headers as never, statusMessage)
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.handler.onResponseData?.(controller, chunk)
  }
  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Record<string, string | Array<string>>): void {
    this.exchange?.onEnd()
    this.handler.onResponseEnd?.(controller, trailers as never)
  }
  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
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
  /** Cleared when the upstream said it will close, or the socket went away. */
  reusable = true
  private handedOver = false
  private closing = false

  constructor(
    readonly key: UpstreamKey,
    readonly socket: net.Socket,
    options: ClientOptions,
    onClose: (connection: ConnectionImpl) => void
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
    socket.once("close", () => {
      this.reusable = false
      // After undici's own "close" listeners have run: destroying the client inside this event would wait
      // for a "close" that has already been emitted.
      if (!this.closing) queueMicrotask(() => onClose(this))
    })
    this.dispatcher = this.client.compose(
      (dispatch) => (opts, handler) => dispatch(opts, new Observer(handler, this.exchange))
    )
  }

  /** Whether a new request may be sent on this connection now. */
  get alive(): boolean {
    return this.reusable && !this.socket.destroyed && !this.client.destroyed && !this.client.closed
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }

  /** The pool's finalizer: the only place a connection is closed. */
  destroy(): Effect.Effect<void> {
    return Effect.promise(() => {
      this.closing = true
      this.reusable = false
      this.socket.destroy()
      return this.client.destroy().catch(noop)
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
    // A socket that closes while idle (the upstream's keep-alive timeout, undici's own, a reset) leaves the pool at once.
    const onClose = (connection: ConnectionImpl) => {
      if (cell.pool !== undefined) runFork(cell.pool.invalidate(connection))
    }
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
            (socket) => new ConnectionImpl(key, socket, clientOptions, onClose)
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
