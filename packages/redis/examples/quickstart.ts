/**
 * The README's example: sessions shared through Redis (REDIS_URL, default
 * redis://127.0.0.1:6379), found by user, updated atomically across
 * instances. Run two of these at once and watch `requests` count both.
 */
import { SessionStore } from "@cistern/session"
import { Effect, Option, Schema } from "effect"
import { RedisSessionStore } from "../src/index.js"

const Session = Schema.Struct({ userId: Schema.String, account: Schema.String, requests: Schema.Number })
type Session = typeof Session.Type

class Sessions extends SessionStore.Tag("app/Sessions")<Sessions, Session, "user">() {}

// REDIS_URL and REDIS_PASSWORD are read as redacted config values.
const SessionsLive = RedisSessionStore.layerConfig(Sessions, {
  schema: Session,
  ttl: "1 hour",
  prefix: "relay:sessions:",
  indexes: { user: (s) => s.userId },
  batchSize: 100,
  flushInterval: "1 second"
})

const program = Effect.gen(function* () {
  const sessions = yield* Sessions
  yield* sessions.getOrCreate("s-1", Effect.succeed({ userId: "u-1", account: "acct-a", requests: 0 }))
  const updated = yield* sessions.update("s-1", (s) => ({ ...s, requests: s.requests + 1 }))
  console.log(
    "requests so far:",
    Option.map(updated, (s) => s.requests)
  )
  console.log(
    "sessions of u-1:",
    (yield* sessions.findBy("user", "u-1")).map((f) => f.id)
  )
  console.log(yield* sessions.stats)
})

Effect.runPromise(program.pipe(Effect.provide(SessionsLive)))
