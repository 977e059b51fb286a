/**
 * The runnable service: a memory service (an MCP server on a free port of
 * 127.0.0.1) and, in front of it, a small HTTP API that uses the long-lived
 * memory client and shows its connection's health:
 *
 * - `GET /status`: health, last check and heartbeat times, rebuild count,
 *   the settings in force and the pool's stats (with its check history);
 * - `POST /memories` `{"text": "…"}` and `GET /memories/search?q=…`: calls
 *   through the client;
 * - `POST /service/reset`, `POST /service/hang`, `POST /service/restart`,
 *   `GET /service/counts`: the memory service's switches, to watch the client
 *   rebuild and retry.
 */
import { createServer } from "node:http"
import { PoolError } from "@cistern/pool"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Config, Console, Context, Duration, Effect, Layer, Redacted, Schema } from "effect"
import { InvalidApiKey, MemoryProtocolError, MemoryUnavailable } from "./client/MemoryError.js"
import * as MemoryClient from "./MemoryClient.js"
import * as Settings from "./Settings.js"
import * as MemoryService from "./service/MemoryService.js"

/** What the service needs to start. */
export interface AppConfig {
  /** `PORT`: the HTTP API's port (0: any free one). Default 8788. */
  readonly port: number
  readonly settings: Settings.Settings
  /** `MEM0_API_KEY`: the key the client sends. */
  readonly apiKey: Redacted.Redacted<string>
  /** `MEMORY_SERVICE_API_KEY`: the key the bundled memory service accepts. */
  readonly serviceApiKey: Redacted.Redacted<string>
}

/** Reads {@link AppConfig} from the environment; a bad value fails naming its variable. */
export const readConfig = Config.all({
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be 0 (any free port) to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8788)
  ),
  settings: Settings.config,
  apiKey: Settings.apiKey,
  serviceApiKey: Config.redacted("MEMORY_SERVICE_API_KEY").pipe(Config.withDefault(Redacted.make("mem0-demo-key")))
})

/** The bundled memory service, and its restart switch running in the app's scope. */
export class Service extends Context.Tag("example/MemoryService")<
  Service,
  {
    readonly service: MemoryService.MemoryService
    readonly restartInBackground: (downtime: Duration.Duration) => Effect.Effect<void>
  }
>() {}

const ServiceLive = (config: AppConfig) =>
  Layer.scoped(
    Service,
    Effect.gen(function* () {
      const service = yield* MemoryService.make({
        apiKeys: new Map([[Redacted.value(config.serviceApiKey), "demo@example.com"]])
      })
      const scope = yield* Effect.scope
      yield* Effect.logInfo(`memory service (MCP over Streamable HTTP) at ${service.host.url}`)
      return {
        service,
        restartInBackground: (downtime) => Effect.asVoid(Effect.forkIn(service.host.restart(downtime), scope))
      }
    })
  )

/** The client, connected (and its key validated) before the API serves. */
const ClientLive = (config: AppConfig) =>
  Layer.scoped(
    MemoryClient.Memory,
    Effect.gen(function* () {
      const { service } = yield* Service
      const client = yield* MemoryClient.make({
        url: service.host.url,
        apiKey: config.apiKey,
        settings: config.settings
      })
      yield* client.connect
      return client
    })
  )

const iso = (millis: number | null) => (millis === null ? null : new Date(millis).toISOString())

const seconds = (d: Duration.Duration) => Duration.toMillis(d) / 1000

const AddBody = Schema.Struct({ text: Schema.NonEmptyString, userId: Schema.optional(Schema.String) })
const SearchParams = Schema.Struct({
  q: Schema.String,
  userId: Schema.optional(Schema.String),
  limit: Schema.optional(Schema.NumberFromString)
})
const RestartParams = Schema.Struct({ downtime: Schema.optional(Schema.NumberFromString) })

/** The HTTP API's routes. */
export const router = (config: AppConfig) =>
  HttpRouter.empty.pipe(
    HttpRouter.get(
      "/status",
      Effect.gen(function* () {
        const client = yield* MemoryClient.Memory
        const s = yield* client.status
        return yield* HttpServerResponse.json({
          connection: {
            healthy: s.healthy,
            lastCheckAt: iso(s.lastCheckAt),
            lastCheckOk: s.lastCheckOk,
            lastHeartbeatAt: iso(s.lastHeartbeatAt),
            checks: s.checks,
            heartbeats: s.heartbeats,
            connections: s.connections,
            rebuilds: s.rebuilds,
            connectAttempts: s.connectAttempts,
            account: s.account,
            lastError: s.lastError
          },
          settings: {
            MEM0_HEALTH_CHECK_INTERVAL: seconds(config.settings.healthCheckInterval),
            MEM0_HEARTBEAT_INTERVAL: seconds(config.settings.heartbeatInterval),
            MEM0_AUTO_REBUILD: config.settings.autoRebuild,
            MEM0_CONNECTION_TIMEOUT: seconds(config.settings.connectionTimeout),
            MEM0_REQUEST_TIMEOUT: seconds(config.settings.requestTimeout),
            MEM0_MAX_RETRIES: config.settings.maxRetries,
            MEM0_RETRY_DELAY: seconds(config.settings.retryDelay),
            MEM0_BACKOFF_FACTOR: config.settings.backoffFactor,
            MEM0_MAX_CONCURRENT_CALLS: config.settings.maxConcurrentCalls
          },
          pool: yield* client.stats
        })
      })
    ),
    HttpRouter.post(
      "/memories",
      Effect.gen(function* () {
        const body = yield* HttpServerRequest.schemaBodyJson(AddBody)
        const client = yield* MemoryClient.Memory
        return yield* HttpServerResponse.json(yield* client.addMemory(body.text, { userId: body.userId }), {
          status: 201
        })
      })
    ),
    HttpRouter.get(
      "/memories/search",
      Effect.gen(function* () {
        const params = yield* HttpServerRequest.schemaSearchParams(SearchParams)
        const client = yield* MemoryClient.Memory
        return yield* HttpServerResponse.json(
          yield* client.searchMemories(params.q, { userId: params.userId, limit: params.limit })
        )
      })
    ),
    HttpRouter.post(
      "/service/reset",
      Effect.flatMap(Service, ({ service }) =>
        Effect.flatMap(service.host.resetConnections, (reset) => HttpServerResponse.json({ reset }))
      )
    ),
    HttpRouter.post(
      "/service/hang",
      Effect.flatMap(Service, ({ service }) =>
        Effect.zipRight(
          service.host.injectFault({ kind: "hang", when: "before", method: "" }),
          HttpServerResponse.json({ hanging: "the next request" }, { status: 202 })
        )
      )
    ),
    HttpRouter.post(
      "/service/restart",
      Effect.gen(function* () {
        const { downtime } = yield* HttpServerRequest.schemaSearchParams(RestartParams)
        const { restartInBackground } = yield* Service
        const seconds = downtime ?? 2
        yield* restartInBackground(Duration.millis(seconds * 1000))
        return yield* HttpServerResponse.json({ restarting: { downtimeSeconds: seconds } }, { status: 202 })
      })
    ),
    HttpRouter.get(
      "/service/counts",
      Effect.flatMap(Service, ({ service }) =>
        Effect.flatMap(service.counts, (counts) => HttpServerResponse.json(counts))
      )
    ),
    // What a caller can act on, as JSON; anything else is a 500 from the platform.
    HttpRouter.catchAll((error) => {
      const body = (status: number, tag: string) =>
        HttpServerResponse.json({ error: tag, message: "message" in error ? String(error.message) : tag }, { status })
      if (error instanceof InvalidApiKey) return body(502, error._tag)
      if (error instanceof MemoryUnavailable || PoolError.isPoolError(error)) return body(503, error._tag)
      if (error instanceof MemoryProtocolError) return body(502, error._tag)
      return body(400, error._tag)
    })
  )

/**
 * The whole service: the memory service, the client, and the HTTP API on
 * 127.0.0.1. It prints `listening on http://127.0.0.1:<port>` once it serves.
 */
export const layer = (config: AppConfig) => {
  const banner = Layer.effectDiscard(HttpServer.addressFormattedWith((url) => Console.log(`listening on ${url}`)))
  // The banner comes once the routes are in place: the server listens before it serves, and a request
  // arriving in between (a script that starts on the banner) would never be answered.
  return banner.pipe(
    Layer.provideMerge(HttpServer.serve(router(config))),
    Layer.provideMerge(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: config.port })),
    Layer.provideMerge(ClientLive(config)),
    Layer.provideMerge(ServiceLive(config))
  )
}
