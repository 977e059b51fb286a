/** The README's example: a memory store with indexes, an atomic update, and a lookup by user. */
import { Effect, Option, Schema } from "effect"
import { SessionStore } from "../src/index.js"

const Session = Schema.Struct({
  userId: Schema.String,
  apiKey: Schema.String,
  requests: Schema.Number,
  errors: Schema.Number
})
type Session = typeof Session.Type

class Sessions extends SessionStore.Tag("app/Sessions")<Sessions, Session, "user" | "apiKey">() {}

const SessionsLive = SessionStore.layerMemory(Sessions, {
  schema: Session,
  capacity: 10_000,
  ttl: "1 hour",
  indexes: { user: (s) => s.userId, apiKey: (s) => s.apiKey }
})

const program = Effect.gen(function* () {
  const sessions = yield* Sessions
  yield* sessions.getOrCreate("s-1", Effect.succeed({ userId: "u-1", apiKey: "k-1", requests: 0, errors: 0 }))
  yield* sessions.update("s-1", (s) => ({ ...s, requests: s.requests + 1 }))
  yield* sessions.touch("s-1", { ttl: "2 hours" })
  const mine = yield* sessions.findBy("user", "u-1")
  console.log(
    mine.map((f) => [f.id, f.value.requests]),
    yield* sessions.stats
  )
  console.log(Option.isSome(yield* sessions.get("s-1")))
})

Effect.runPromise(program.pipe(Effect.provide(SessionsLive)))
