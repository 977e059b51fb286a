import type * as net from "node:net"
import * as Effect from "effect/Effect"
import { type buildConnector, Client } from "undici"
import type { UpstreamKey, UpstreamProxy } from "../UpstreamPool.js"
import { UpstreamConnectError } from "../UpstreamPool.js"
import { describeKey } from "./upstreamKey.js"

/** What `buildConnector`'s connect function needs to reach an origin. */
export interface Endpoint {
  readonly protocol: string
  readonly hostname: string
  readonly host: string
  readonly port: string
}

/** @internal */
export const endpoint = (origin: string): Endpoint => {
  const url = new URL(origin)
  // `URL` keeps an IPv6 address in brackets; `net.connect` wants it bare.
  const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname
  return { protocol: url.protocol, hostname, host: url.host, port: url.port }
}

const defaultPort = (protocol: string) => (protocol === "https:" ? "443" : "80")

/**
 * Runs a callback-style connect; a socket that arrives after the caller gave
 * up (interrupted by `createTimeout` or shutdown) is destroyed, never leaked.
 */
const connectWith = (
  key: UpstreamKey,
  start: (done: (error: Error | null, socket: net.Socket | null) => void) => (() => void) | undefined
): Effect.Effect<net.Socket, UpstreamConnectError> =>
  Effect.async<net.Socket, UpstreamConnectError>((resume) => {
    let settled = false
    const cancel = start((error, socket) => {
      if (settled) {
        socket?.destroy()
        return
      }
      settled = true
      if (error !== null || socket === null) {
        const status = (error as { proxyStatus?: number } | null)?.proxyStatus
        resume(
          Effect.fail(
            new UpstreamConnectError({
              upstream: describeKey(key),
              reason: status === undefined ? "Connect" : "ProxyRefused",
              proxyStatus: status,
              cause: error
            })
          )
        )
      } else {
        resume(Effect.succeed(socket))
      }
    })
    return Effect.sync(() => {
      if (settled) return
      settled = true
      cancel?.()
    })
  })

/** Opens a TCP (or TLS) connection straight to the key's origin. */
const direct = (
  key: UpstreamKey,
  connector: buildConnector.connector
): Effect.Effect<net.Socket, UpstreamConnectError> =>
  connectWith(key, (done) => {
    const socket = connector(endpoint(key.origin), done) as unknown as net.Socket | undefined
    return () => socket?.destroy()
  })

/** The headers of a proxy's CONNECT request: its own, plus `Proxy-Authorization` from the URL's user info. */
const proxyHeaders = (proxy: UpstreamProxy, url: URL): Record<string, string> => {
  const headers: Record<string, string> = { ...proxy.headers }
  if (url.username !== "" && !Object.keys(headers).some((h) => h.toLowerCase() === "proxy-authorization")) {
    const user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`
    headers["proxy-authorization"] = `Basic ${Buffer.from(user).toString("base64")}`
  }
  return headers
}

/**
 * Opens a tunnel through an HTTP CONNECT proxy (undici's own `connect` on a
 * short-lived client to the proxy, as its `ProxyAgent` does), then TLS over it
 * for an https origin.
 */
const tunnel = (
  key: UpstreamKey,
  proxy: UpstreamProxy,
  proxyConnector: buildConnector.connector,
  connector: buildConnector.connector
): Effect.Effect<net.Socket, UpstreamConnectError> => {
  const target = endpoint(key.origin)
  const url = new URL(key.origin)
  const authority = `${url.hostname}:${url.port === "" ? defaultPort(url.protocol) : url.port}`
  const proxyUrl = new URL(proxy.uri)
  const headers = { ...proxyHeaders(proxy, proxyUrl), host: authority }
  const opened = Effect.acquireUseRelease(
    Effect.sync(() => new Client(proxyUrl.origin, { connect: proxyConnector })),
    (client) =>
      connectWith(key, (done) => {
        const controller = new AbortController()
        client
          .connect({ path: authority, headers, signal: controller.signal })
          .then(({ socket, statusCode }) => {
            // undici stripped every listener from the tunnelled socket: an error before ours would crash.
            const raw = socket as net.Socket
            raw.on("error", noop)
            if (statusCode === 200) return done(null, raw)
            raw.destroy()
            done(
              Object.assign(new Error(`the proxy answered ${statusCode} to CONNECT`), { proxyStatus: statusCode }),
              null
            )
          })
          .catch((error: Error) => done(error, null))
        return () => controller.abort()
      }),
    (client) => Effect.promise(() => client.destroy().catch(noop))
  )
  return target.protocol === "https:"
    ? Effect.flatMap(opened, (socket) =>
        connectWith(key, (done) => {
          const tls = connector({ ...target, httpSocket: socket }, (error, secure) => {
            // A failed handshake leaves the tunnel open under it: close it too.
            if (error !== null) socket.destroy()
            done(error, secure)
          }) as unknown as net.Socket | undefined
          return () => {
            tls?.destroy()
            socket.destroy()
          }
        })
      )
    : opened
}

const noop = () => {}

/** @internal */
export const open = (
  key: UpstreamKey,
  connector: buildConnector.connector,
  proxyConnector: buildConnector.connector
): Effect.Effect<net.Socket, UpstreamConnectError> =>
  key.proxy === undefined ? direct(key, connector) : tunnel(key, key.proxy, proxyConnector, connector)
