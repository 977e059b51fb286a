import { createHash, timingSafeEqual } from "node:crypto"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Authorization, HealthAuthorization, unauthorized } from "../AdminApi.js"
import { hasBody } from "./body.js"

/** @internal */
export const defaultVariable = "CISTERN_ADMIN_TOKEN"

const digest = (value: string): Buffer => createHash("sha256").update(value, "utf8").digest()

// RFC 7235: the scheme is case-insensitive; RFC 6750: one or more spaces, then the token.
const bearerHeader = /^Bearer +(\S+) *$/i

/**
 * Whether an `Authorization` header carries the token. Both sides are hashed
 * first, so the comparison always runs over 32 bytes: its time says nothing
 * about the token's length or content, and `timingSafeEqual` (which throws on
 * unequal lengths) cannot throw.
 *
 * @internal
 */
export const verifier = (token: Redacted.Redacted<string>): ((header: string | undefined) => boolean) => {
  const expected = digest(Redacted.value(token))
  return (header) => {
    const match = header === undefined ? null : bearerHeader.exec(header)
    const presented = digest(match === null ? "" : match[1])
    try {
      return timingSafeEqual(presented, expected) && match !== null
    } catch {
      return false
    }
  }
}

const challenge = (request: HttpServerRequest.HttpServerRequest, response: HttpServerResponse.HttpServerResponse) =>
  Effect.succeed(
    response.status !== 401
      ? response
      : HttpServerResponse.setHeaders(response, {
          "www-authenticate": "Bearer",
          // An unauthenticated upload is not read: the server hangs up after the 401.
          ...(hasBody(request) ? { connection: "close" } : {})
        })
  )

/**
 * How many `Authorization` headers the request carried. Node's `headers`
 * object keeps the first of duplicates and drops the rest, so its raw header
 * list is read when there is one; a fetch `Request` joins duplicates with a
 * comma, which no bearer header matches.
 */
const authorizationHeaders = (request: HttpServerRequest.HttpServerRequest): number => {
  const source = request.source as { readonly rawHeaders?: unknown } | null
  if (typeof source === "object" && source !== null && Array.isArray(source.rawHeaders)) {
    let count = 0
    for (let i = 0; i < source.rawHeaders.length; i += 2) {
      const name = source.rawHeaders[i]
      if (typeof name === "string" && name.length === 13 && name.toLowerCase() === "authorization") count++
    }
    return count
  }
  return request.headers.authorization === undefined ? 0 : 1
}

/** @internal */
export const authenticate = (
  token: Redacted.Redacted<string>
): Effect.Effect<void, typeof unauthorized, HttpServerRequest.HttpServerRequest> => {
  const verify = verifier(token)
  return Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    // Two credentials are none: a proxy must not be able to smuggle a second one.
    authorizationHeaders(request) === 1 && verify(request.headers.authorization)
      ? Effect.void
      : Effect.zipRight(HttpApp.appendPreResponseHandler(challenge), Effect.fail(unauthorized))
  )
}

/** @internal */
export interface Options {
  readonly token: Redacted.Redacted<string>
  readonly publicHealth?: boolean | undefined
}

/** @internal */
export const layer = (options: Options): Layer.Layer<Authorization | HealthAuthorization> => {
  const check = authenticate(options.token)
  return Layer.mergeAll(
    Layer.succeed(Authorization, Authorization.of({ bearer: () => check })),
    Layer.succeed(
      HealthAuthorization,
      HealthAuthorization.of({ bearer: () => (options.publicHealth === true ? Effect.void : check) })
    )
  )
}

/** @internal */
export const token = (variable: string = defaultVariable): Config.Config<Redacted.Redacted<string>> =>
  Config.redacted(variable).pipe(
    Config.mapOrFail((value) =>
      /^\S+$/.test(Redacted.value(value))
        ? Either.right(value)
        : Either.left(
            ConfigError.InvalidData([variable], `${variable}: the admin token must not be empty or contain whitespace`)
          )
    )
  )

/** @internal */
export interface ConfigOptions {
  readonly variable?: string | undefined
  readonly publicHealth?: boolean | undefined
}

/** @internal */
export const layerConfig = (options?: ConfigOptions) =>
  Layer.unwrapEffect(
    Effect.map(token(options?.variable), (token) => layer({ token, publicHealth: options?.publicHealth }))
  )
