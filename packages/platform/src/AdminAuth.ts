/**
 * Bearer-token authentication of the admin API.
 *
 * - The token is read once, with `Config.redacted` (default variable
 *   `CISTERN_ADMIN_TOKEN`); an empty token, or one with whitespace, is a
 *   `ConfigError` naming the variable.
 * - A request passes with `Authorization: Bearer <token>` (scheme in any case).
 *   The presented and the expected token are both hashed with SHA-256 and the
 *   digests compared with `crypto.timingSafeEqual`, so the comparison takes the
 *   same time whatever is presented, and a token of another length is a plain
 *   mismatch rather than an exception.
 * - A missing header, an empty token, another scheme, a wrong token and two
 *   `Authorization` headers (whatever they hold) all get the same 401 body
 *   (`Unauthorized`) with `WWW-Authenticate: Bearer`; when the request
 *   announced a body, with `Connection: close` too, so it is not read.
 * - Tokens in the query string are never read.
 * - Nothing here logs; see `AdminHttp.logger` for an access log that never
 *   writes headers or query strings.
 *
 * ```ts
 * import { Layer } from "effect"
 * import { AdminAuth, AdminHttp } from "@cistern/platform"
 *
 * const AdminLive = AdminHttp.layerServer().pipe(
 *   Layer.provide(AdminAuth.layerConfig({ publicHealth: true }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type { Authorization, HealthAuthorization } from "./AdminApi.js"
import * as internal from "./internal/auth.js"

/**
 * The variable the token is read from unless told otherwise.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultVariable: string = internal.defaultVariable

/**
 * Options of {@link layer}: the token itself, when the application already
 * holds it (from a secret store, or a test), and whether `/health` is public.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The token a request must present. */
  readonly token: Redacted.Redacted<string>
  /** Whether `/health` answers without a token (for load balancers). Default `false`. */
  readonly publicHealth?: boolean | undefined
}

/**
 * Implements both admin middlewares with a given token.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: (options: Options) => Layer.Layer<Authorization | HealthAuthorization> = internal.layer

/**
 * Options of {@link layerConfig}: which configuration variable holds the
 * token, and whether `/health` answers without one (for a load balancer that
 * cannot send a header).
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigOptions {
  /** The variable holding the token. Default `CISTERN_ADMIN_TOKEN`. */
  readonly variable?: string | undefined
  /** Whether `/health` answers without a token. Default `false`. */
  readonly publicHealth?: boolean | undefined
}

/**
 * Implements both admin middlewares with the token read from `Config`; fails
 * with a `ConfigError` naming the variable when it is missing or invalid.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig: (
  options?: ConfigOptions
) => Layer.Layer<Authorization | HealthAuthorization, ConfigError.ConfigError> = internal.layerConfig

/**
 * The token `Config`: a non-empty string without whitespace, redacted.
 *
 * @since 0.1.0
 * @category config
 */
export const token: (variable?: string) => Config.Config<Redacted.Redacted<string>> = internal.token

/**
 * A constant-time check of an `Authorization` header against the token, for
 * applications that guard other routes the same way.
 *
 * @since 0.1.0
 * @category constructors
 */
export const verifier: (token: Redacted.Redacted<string>) => (header: string | undefined) => boolean = internal.verifier
