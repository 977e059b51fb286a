import * as Http from "node:http"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Cause, Context, Duration, Effect, HashMap, Layer, List, Logger, LogLevel, Redacted } from "effect"
import { inject } from "vitest"
import * as Gateway from "../src/Gateway.js"
import * as GatewayHttp from "../src/Http.js"
import { bundledStdio, type McpServer } from "../src/McpServers.js"
import { defaults, type PoolSettings } from "../src/Settings.js"
import * as HttpToolServer from "../src/servers/HttpToolServer.js"
import * as Users from "../src/Users.js"

export const adminToken = "admin-token-3f9c1e7a55"

/** `user1` … `userN`, each with a gateway token and a credential for both servers. */
export const makeUsers = (n: number): Users.UsersFile => ({
  users: Array.from({ length: n }, (_, i) => ({
    id: `user${i + 1}`,
    token: Redacted.make(`gw-token-user${i + 1}-7d1e0b`),
    credentials: {
      "local-tools": Redacted.make(`local-cred-user${i + 1}-a91f`),
      "remote-tools": Redacted.make(`remote-cred-user${i + 1}-c07b`),
      "search-tools": Redacted.make(`search-cred-user${i + 1}-5e2d`)
    }
  }))
})

/** Every secret of `file` (and the admin token), to look for in responses and logs. */
export const secretsOf = (file: Users.UsersFile): ReadonlyArray<string> => [
  adminToken,
  ...file.users.flatMap((u) => [Redacted.value(u.token), ...Object.values(u.credentials).map(Redacted.value)])
]

export const tokenOf = (file: Users.UsersFile, userId: string) =>
  Redacted.value(file.users.find((u) => u.id === userId)!.token)

/** The stdio server, compiled once for the whole run by `test/setup.ts`. */
const stdioScript = Effect.sync(() => inject("stdioScript"))

/** The bundled HTTP MCP server on a free port, and the catalog of both servers. */
export const servers = Effect.zipWith(stdioScript, HttpToolServer.make({ name: "remote-tools" }), (script, http) => ({
  http,
  catalog: [
    bundledStdio(script, "local-tools"),
    { transport: "http", name: "remote-tools", url: http.url },
    // a third server for the catalog (the same host behind another name): a user with three servers
    { transport: "http", name: "search-tools", url: http.url }
  ] satisfies ReadonlyArray<McpServer>
}))

/** Test settings: the gateway's defaults with `overrides`, and a short tool-call timeout. */
export const settings = (overrides: Partial<PoolSettings> = {}): PoolSettings => ({
  ...defaults,
  callTimeout: Duration.seconds(10),
  ...overrides
})

/** A gateway over `catalog` with the users of `file`, closed with the scope. */
export const gateway = (catalog: ReadonlyArray<McpServer>, file: Users.UsersFile, poolSettings: PoolSettings) =>
  Effect.gen(function* () {
    const users = yield* Users.make(file)
    const gw = yield* Gateway.make({ servers: catalog, settings: poolSettings }).pipe(
      Effect.provideService(Users.Users, users)
    )
    return { gateway: gw, users }
  })

/** The gateway's HTTP API on a free port of 127.0.0.1, closed with the scope. */
export const serve = (gw: Gateway.Service, users: Users.Service) =>
  Effect.gen(function* () {
    const context = yield* HttpServer.serve(GatewayHttp.app(Redacted.make(adminToken))).pipe(
      Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 })),
      Layer.provide(Layer.succeed(Gateway.Gateway, gw)),
      Layer.provide(Layer.succeed(Users.Users, users)),
      Layer.build,
      Effect.orDie
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    return `http://127.0.0.1:${address._tag === "TcpAddress" ? address.port : 0}`
  })

/** What a request got back: status, headers and body as text. */
export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly text: string
  readonly json: any
}

/** A real HTTP request (Node's fetch) to the gateway. */
export const request = (
  url: string,
  options: { readonly method?: string; readonly token?: string | undefined; readonly body?: string | undefined }
): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: options.method ?? "GET",
      headers: {
        ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        ...(options.body === undefined ? {} : { "content-type": "application/json" })
      },
      ...(options.body === undefined ? {} : { body: options.body })
    })
    const text = await response.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: response.status, headers: Object.fromEntries(response.headers), text, json }
  })

/** Every log line, rendered every way a log sink could (text, JSON, annotations, spans, causes). */
export const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>((options) => {
    lines.push(Logger.logfmtLogger.log(options))
    lines.push(JSON.stringify(Logger.structuredLogger.log(options)))
    lines.push(JSON.stringify(HashMap.toEntries(options.annotations)))
    lines.push(
      List.toArray(options.spans)
        .map((s) => s.label)
        .join(" ")
    )
    if (!Cause.isEmpty(options.cause)) lines.push(Cause.pretty(options.cause, { renderErrorCause: true }))
  })
  return {
    lines,
    layer: Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.All))
  }
}

/** Only errors from the code under test. */
export const quiet = Logger.minimumLogLevel(LogLevel.Error)

/**
 * Repeats `self` until `predicate` holds, waiting a few real milliseconds between
 * tries (for real I/O: a process exiting, a session ending), up to `within`.
 * Not a timing rule: the pool's time is the `TestClock` where it matters.
 */
export const eventually = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  predicate: (a: A) => boolean,
  what: string,
  within = 20_000
) =>
  Effect.gen(function* () {
    const deadline = performance.now() + within
    while (true) {
      const a = yield* self
      if (predicate(a)) return a
      if (performance.now() > deadline) return yield* Effect.dieMessage(`never happened: ${what}`)
      yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 10)))
    }
  })

/** Whether a process is alive. */
export const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
