import { createHash } from "node:crypto"
import type { UpstreamKey, UpstreamProxy } from "../UpstreamPool.js"

/** A short, stable, one-way fingerprint: keys and logs never hold a secret. */
export const fingerprint = (secret: string): string =>
  createHash("sha256").update(secret).digest("base64url").slice(0, 16)

const normalizeProxy = (proxy: string | URL | UpstreamProxy): UpstreamProxy =>
  typeof proxy === "string" || proxy instanceof URL ? { uri: String(proxy) } : proxy

/** The proxy part of a key's id: its origin, and a fingerprint of its credentials and headers. */
const proxyId = (proxy: UpstreamProxy): string => {
  const url = new URL(proxy.uri)
  const secrets = `${url.username}:${url.password}|${JSON.stringify(proxy.headers ?? {})}`
  return `${url.origin}#${fingerprint(secrets)}`
}

/** @internal */
export const make = (
  origin: string | URL,
  options?: {
    readonly proxy?: string | URL | UpstreamProxy | undefined
    readonly credential?: string | undefined
  }
): UpstreamKey => {
  const url = typeof origin === "string" ? new URL(origin) : origin
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`an upstream is http: or https:, not ${url.protocol}`)
  }
  const proxy = options?.proxy === undefined ? undefined : normalizeProxy(options.proxy)
  const credential = options?.credential === undefined ? "" : fingerprint(options.credential)
  const id = `${url.origin} ${proxy === undefined ? "-" : proxyId(proxy)} ${credential === "" ? "-" : credential}`
  return { origin: url.origin, proxy, credential, id }
}

/** @internal */
export const describeKey = (key: UpstreamKey): string => {
  let text = key.origin
  if (key.proxy !== undefined) text += ` via ${new URL(key.proxy.uri).host}`
  if (key.credential !== "") text += ` as ${key.credential.slice(0, 8)}`
  return text
}
