import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Redis, type RedisOptions } from "ioredis"
import type { Options, Service } from "../RedisClient.js"
import * as RedisError from "../RedisError.js"

const millis = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number =>
  Duration.toMillis(Duration.decode(input ?? fallback))

const reveal = (value: string | Redacted.Redacted<string> | undefined): string | undefined =>
  value === undefined ? undefined : Redacted.isRedacted(value) ? Redacted.value(value) : value

/** Resolves once the client is ready, or with `false` when it ends first. */
const whenReady = (redis: Redis) =>
  Effect.async<boolean>((resume) => {
    if (redis.status === "ready") return resume(Effect.succeed(true))
    const ready = () => {
      cleanup()
      resume(Effect.succeed(true))
    }
    const end = () => {
      cleanup()
      resume(Effect.succeed(false))
    }
    const cleanup = () => {
      redis.off("ready", ready)
      redis.off("end", end)
    }
    redis.on("ready", ready)
    redis.on("end", end)
    return Effect.sync(cleanup)
  })

/** @internal */
export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const commandTimeout = millis(options.commandTimeout, "1 second")
    const connectTimeout = millis(options.connectTimeout, "5 seconds")
    const reconnectMax = millis(options.reconnectMax, "2 seconds")
    const url = reveal(options.url) ?? "redis://127.0.0.1:6379"
    const password = reveal(options.password)
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const redisOptions: RedisOptions = {
          ...options.ioredis,
          ...(password === undefined ? {} : { password }),
          commandTimeout,
          connectTimeout,
          // A command never waits for a connection: it fails at once while there is none...
          enableOfflineQueue: false,
          // ...and is not re-sent after a reconnect (callers decide, with their own deadline).
          maxRetriesPerRequest: 0,
          // The connection is re-established forever, backing off from 50 ms to `reconnectMax`.
          retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 16), reconnectMax)
        }
        // ioredis's own option type does not match its constructor under `exactOptionalPropertyTypes`.
        return new Redis(url, redisOptions as never)
      }),
      (redis) => Effect.sync(() => redis.disconnect(false))
    )
    // Connection errors reach callers as rejected commands; without a listener
    // ioredis would print each one to the console.
    redis.on("error", () => {})
    const ready = yield* whenReady(redis).pipe(
      Effect.timeout(connectTimeout),
      Effect.orElseSucceed(() => false)
    )
    if (!ready) {
      yield* Effect.logWarning("Redis is not reachable yet; commands fail fast until it is").pipe(
        Effect.annotateLogs({ package: "@cistern/redis", module: "RedisClient" })
      )
    }
    const service: Service = {
      redis,
      run: <A>(command: string, f: (redis: Redis) => Promise<A>) =>
        Effect.tryPromise({ try: () => f(redis), catch: (cause) => RedisError.fromUnknown(command, cause) }),
      isReady: Effect.sync(() => redis.status === "ready"),
      commandTimeoutMillis: commandTimeout
    }
    return service
  })
