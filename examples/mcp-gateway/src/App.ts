/**
 * The runnable gateway: the two MCP servers it reaches (a stdio server it
 * spawns per connection, and an HTTP server it starts on a free port of
 * 127.0.0.1), its users, the pooled gateway and its HTTP API on 127.0.0.1.
 * It prints `listening on http://127.0.0.1:<port>` once it serves.
 */
import { createServer } from "node:http"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigError, Console, Context, Effect, Layer } from "effect"
import * as Gateway from "./Gateway.js"
import * as Http from "./Http.js"
import { bundledStdio, type McpServer } from "./McpServers.js"
import * as Settings from "./Settings.js"
import * as HttpToolServer from "./servers/HttpToolServer.js"
import * as StdioBundle from "./servers/StdioBundle.js"
import * as Users from "./Users.js"

/** The MCP servers the gateway reaches. */
export class Servers extends Context.Tag("example/Servers")<
  Servers,
  { readonly catalog: ReadonlyArray<McpServer>; readonly http: HttpToolServer.HttpToolServer }
>() {}

/** Starts the bundled HTTP MCP server; the stdio one is spawned per connection. */
export const ServersLive = Layer.scoped(
  Servers,
  Effect.gen(function* () {
    const script = yield* StdioBundle.make
    const http = yield* HttpToolServer.make({ name: "remote-tools" })
    yield* Effect.logInfo(`MCP server remote-tools (Streamable HTTP) at ${http.url}; local-tools over stdio`)
    return {
      catalog: [bundledStdio(script, "local-tools"), { transport: "http", name: "remote-tools", url: http.url }],
      http
    }
  })
)

const GatewayLive = (settings: Settings.Settings) =>
  Layer.unwrapEffect(Effect.map(Servers, ({ catalog }) => Gateway.layer({ servers: catalog, settings })))

/** The whole gateway as a layer. */
export const layer = (settings: Settings.Settings) => {
  const banner = Layer.effectDiscard(HttpServer.addressFormattedWith((url) => Console.log(`listening on ${url}`)))
  // The banner comes once the routes are in place: the server listens before it serves, and a request
  // arriving in between (a script that starts on the banner) would never be answered.
  return banner.pipe(
    Layer.provideMerge(HttpServer.serve(Http.app(settings.adminToken))),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: settings.port })),
    Layer.provideMerge(GatewayLive(settings)),
    Layer.provideMerge(ServersLive),
    // the users file first: a bad one stops the gateway before any server starts
    Layer.provideMerge(Users.layerFile(settings.usersFile))
  )
}

const refuse = (why: string) => Effect.as(Console.error(`cannot start the MCP gateway:\n${why}`), 1)

/**
 * Reads the settings and runs the gateway until interrupted. Without
 * `ADMIN_TOKEN`, with an invalid setting or users file, it does not start:
 * it says why on stderr and answers the exit code 1.
 */
export const program: Effect.Effect<number> = Effect.gen(function* () {
  const settings = yield* Settings.settings
  return yield* Layer.launch(layer(settings))
}).pipe(
  Effect.catchIf(ConfigError.isConfigError, (error) =>
    refuse(
      String(error).includes("ADMIN_TOKEN")
        ? `${String(error)}\n(set ADMIN_TOKEN to the bearer token of the admin endpoints)`
        : String(error)
    )
  ),
  Effect.catchTags({
    InvalidUsers: (error) => refuse(error.message),
    BundleFailed: (error) => refuse(error.message),
    ServeError: (error) => refuse(`cannot listen on 127.0.0.1 (PORT): ${String(error.cause)}`)
  })
)
