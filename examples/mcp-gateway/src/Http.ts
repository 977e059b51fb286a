/**
 * The gateway's HTTP API:
 *
 * - `POST /api/mcp/:server/tools/:tool` (a user's bearer token; the body is
 *   the tool's arguments as a JSON object): calls the tool over one of the
 *   user's pooled connections; answers `{ "success": true, "data": <the MCP
 *   tool result> }`;
 * - `GET /api/mcp/:server/tools` (user): the server's tools;
 * - `PUT /api/mcp/:server/credential` (user; `{ "credential": "…" }`):
 *   replaces the user's credential for that server (the next call opens a new
 *   connection; the old one closes once its calls return);
 * - `GET /api/mcp/pool-status` and `POST /api/mcp/cleanup-connections`
 *   (the admin token): the multi-user MCP gateway's admin bodies, as they
 *   always were.
 *
 * Errors answer `{ "success": false, "error": { "code", "message" } }`. No
 * response and no log line holds a token or a credential: the access log
 * never writes headers or query strings, and errors name users, servers and
 * keys (`user:server`) only.
 */
import { AdminAuth, AdminHttp } from "@cistern/platform"
import { PoolError } from "@cistern/pool"
import { type HttpBody, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option, Redacted, Schema } from "effect"
import { fingerprint } from "./Credential.js"
import { Gateway, NoCredential, UnknownServer } from "./Gateway.js"
import { ConnectFailed, ConnectionLost, ToolRejected, ToolTimeout } from "./GatewayError.js"
import { Users } from "./Users.js"

const failure = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  HttpServerResponse.json({ success: false, error: { code, message } }, { status, headers })

const unauthorized = failure(401, "Unauthorized", "a valid bearer token is required", {
  "www-authenticate": "Bearer"
})

/** A request's body is not what the route takes. */
class BadRequest extends Schema.TaggedError<BadRequest>()("BadRequest", { message: Schema.String }) {}

const Args = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const CredentialBody = Schema.Struct({
  credential: Schema.String.pipe(
    Schema.pattern(/^\S{8,512}$/, { message: () => "at least 8 characters, no whitespace" })
  )
})

/** The body as JSON (an empty body is `{}`), decoded with `schema`; errors never repeat the body. */
const body = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* Effect.orElse(request.text, () => Effect.succeed(""))
    const json = yield* Effect.try({
      try: () => (text.trim() === "" ? {} : (JSON.parse(text) as unknown)),
      catch: () => new BadRequest({ message: "the body must be JSON" })
    })
    return yield* Schema.decodeUnknown(schema)(json).pipe(
      Effect.mapError(() => new BadRequest({ message: "the body does not have the expected shape" }))
    )
  })

const authorization = Effect.map(HttpServerRequest.HttpServerRequest, (request) => request.headers.authorization)

/** Runs `handler` as the user the bearer token belongs to; 401 otherwise. */
const asUser = <E, R>(handler: (userId: string) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.gen(function* () {
    const users = yield* Users
    const user = yield* Effect.flatMap(authorization, users.authenticate)
    return yield* Option.match(user, { onNone: () => unauthorized, onSome: handler })
  })

/** Runs `handler` when the admin token is presented; 401 otherwise. */
const asAdmin = <E, R>(
  isAdmin: (header: string | undefined) => boolean,
  handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  Effect.flatMap(
    authorization,
    (header): Effect.Effect<HttpServerResponse.HttpServerResponse, E | HttpBody.HttpBodyError, R> =>
      isAdmin(header) ? handler : unauthorized
  )

const param = (name: string) => Effect.map(HttpRouter.params, (params) => params[name] ?? "")

/** The routes; `adminToken` guards the admin endpoints. */
export const router = (adminToken: Redacted.Redacted<string>) => {
  const isAdmin = AdminAuth.verifier(adminToken)
  return HttpRouter.empty.pipe(
    HttpRouter.post(
      "/api/mcp/:server/tools/:tool",
      asUser((userId) =>
        Effect.gen(function* () {
          const gateway = yield* Gateway
          const args = yield* body(Args)
          const result = yield* gateway.callTool(userId, yield* param("server"), yield* param("tool"), args)
          return yield* HttpServerResponse.json({ success: true, data: result })
        })
      )
    ),
    HttpRouter.get(
      "/api/mcp/:server/tools",
      asUser((userId) =>
        Effect.gen(function* () {
          const gateway = yield* Gateway
          const tools = yield* gateway.listTools(userId, yield* param("server"))
          return yield* HttpServerResponse.json({ success: true, data: { tools } })
        })
      )
    ),
    HttpRouter.put(
      "/api/mcp/:server/credential",
      asUser((userId) =>
        Effect.gen(function* () {
          const gateway = yield* Gateway
          const users = yield* Users
          const server = yield* param("server")
          if (!gateway.servers.some((s) => s.name === server)) return yield* new UnknownServer({ server })
          const { credential } = yield* body(CredentialBody)
          yield* users.setCredential(userId, server, Redacted.make(credential))
          yield* Effect.logInfo(`credential of ${userId}:${server} replaced`)
          return yield* HttpServerResponse.json({
            success: true,
            data: { server, fingerprint: fingerprint(credential) }
          })
        })
      )
    ),
    HttpRouter.get(
      "/api/mcp/pool-status",
      asAdmin(
        isAdmin,
        Effect.flatMap(Gateway, (gateway) => Effect.flatMap(gateway.poolStatus, (s) => HttpServerResponse.json(s)))
      )
    ),
    HttpRouter.post(
      "/api/mcp/cleanup-connections",
      asAdmin(
        isAdmin,
        Effect.flatMap(Gateway, (gateway) =>
          Effect.flatMap(gateway.cleanupConnections, (report) => HttpServerResponse.json(report))
        )
      )
    ),
    // What a caller can act on; anything else is the platform's 500 (and its log line).
    HttpRouter.catchAll((error) => {
      if (error instanceof BadRequest) return failure(400, error._tag, error.message)
      if (error instanceof UnknownServer) return failure(404, error._tag, error.message)
      if (error instanceof NoCredential) return failure(403, error._tag, error.message)
      if (error instanceof ToolRejected) return failure(400, error._tag, error.message)
      if (error instanceof ToolTimeout) return failure(504, error._tag, error.message)
      if (error instanceof ConnectFailed || error instanceof ConnectionLost) {
        return Effect.zipRight(Effect.logWarning(error.message), failure(502, error._tag, error.message))
      }
      if (PoolError.isPoolError(error)) {
        const retryAfter = error._tag === "CircuitOpen" ? Math.ceil(error.retryAfterMillis / 1000) : 1
        return failure(503, error._tag, error.message, { "retry-after": String(retryAfter) })
      }
      return failure(500, "InternalError", "unexpected error")
    })
  )
}

/** The routes with the access log (no headers, no query strings) and query strings dropped. */
export const app = (adminToken: Redacted.Redacted<string>) =>
  router(adminToken).pipe(AdminHttp.withoutQuery, AdminHttp.logger)
