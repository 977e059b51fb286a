/**
 * Starts the LLM relay on 127.0.0.1:$PORT (default 8080) in front of an
 * upstream: `UPSTREAM_URL`, or a stand-in LLM server started here on a free
 * loopback port (its tokens and failures set by `UPSTREAM_*` variables).
 */

import { NodeRuntime } from "@effect/platform-node"
import { Config, Console, Effect, Option, Redacted } from "effect"
import { adminToken, listen, relayConfig } from "./Relay.js"
import * as Upstream from "./Upstream.js"

const rate = (name: string) =>
  Config.number(name).pipe(
    Config.validate({ message: `${name} must be between 0 and 1`, validation: (n) => n >= 0 && n <= 1 }),
    Config.withDefault(0)
  )

const settings = Config.all({
  port: Config.integer("PORT").pipe(
    Config.validate({ message: "PORT must be 0 (any free port) to 65535", validation: (n) => n >= 0 && n <= 65535 }),
    Config.withDefault(8080)
  ),
  upstreamUrl: Config.option(Config.string("UPSTREAM_URL")),
  upstream: Config.all({
    tokens: Config.integer("UPSTREAM_TOKENS").pipe(Config.withDefault(20)),
    delayMs: Config.number("UPSTREAM_TOKEN_DELAY_MS").pipe(Config.withDefault(20)),
    failRate: rate("UPSTREAM_FAIL_RATE"),
    hangRate: rate("UPSTREAM_HANG_RATE"),
    resetRate: rate("UPSTREAM_RESET_RATE")
  })
})

const main = Effect.gen(function* () {
  const { port, upstream, upstreamUrl } = yield* settings
  const config = yield* relayConfig
  const origin = yield* Option.match(upstreamUrl, {
    onSome: Effect.succeed,
    onNone: () =>
      Upstream.start(upstream).pipe(
        Effect.tap((started) => Console.log(`stand-in upstream on ${started.url}`)),
        Effect.map((started) => started.url)
      )
  })
  const admin = yield* adminToken
  const server = yield* listen({ upstream: origin, config, adminToken: admin.token }, port)
  if (admin.generated) {
    yield* Console.log(
      `admin API under /admin, token (set CISTERN_ADMIN_TOKEN to choose one): ${Redacted.value(admin.token)}`
    )
  }
  yield* Console.log(
    `sessions and affinity pins in ${config.sessions.redis.url === undefined ? "memory" : "Redis (REDIS_URL)"}; accounts: ${config.accounts.map((a) => a.name).join(", ")}`
  )
  yield* Console.log(`listening on ${server.url}`)
  return yield* Effect.never
})

main.pipe(Effect.scoped, NodeRuntime.runMain)
