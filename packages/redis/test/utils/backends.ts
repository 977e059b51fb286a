/**
 * The two stores the behaviour suite runs over, built the same way: the
 * memory store of `@cistern/session`, and a Redis store over a real
 * `redis-server` started for the test (with a prefix of its own).
 */
import { SessionStore } from "@cistern/session"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as RedisClient from "../../src/RedisClient.js"
import * as RedisSessionStore from "../../src/RedisSessionStore.js"
import * as RedisServer from "./RedisServer.js"

export type Options<A, I extends string> = SessionStore.MemoryOptions<A, I> &
  Omit<RedisSessionStore.Options<A, I>, keyof SessionStore.MemoryOptions<A, I>>

export interface Backend {
  readonly name: "memory" | "redis"
  readonly make: <A, I extends string>(
    options: Options<A, I>
  ) => Effect.Effect<SessionStore.SessionStore<A, I>, RedisServer.RedisServerError, Scope.Scope>
}

export const memory: Backend = { name: "memory", make: (options) => SessionStore.make(options) }

let stores = 0

export const redis: Backend = {
  name: "redis",
  make: (options) =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      // Generous: a command a loaded machine stalls past its timeout would send the store into fallback.
      const client = yield* RedisClient.make({ url: server.url, commandTimeout: "5 seconds" })
      return yield* RedisSessionStore.make({ prefix: `test${++stores}:`, ...options }).pipe(
        Effect.provideService(RedisClient.RedisClient, client)
      )
    })
}

/** Whether the Redis tests run: skipped without redis-server, failed under CI. */
export const redisAvailable = (): { readonly run: boolean; readonly reason: string } => {
  const installed = RedisServer.isInstalled()
  return {
    run: installed,
    reason: `${RedisServer.binary} is not on PATH: run .ci/install-servers.sh to run the Redis tests`
  }
}
