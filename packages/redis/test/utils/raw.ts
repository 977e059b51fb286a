/** A plain ioredis client for looking at what a store left in Redis, closed with its scope. */
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"

export const rawClient = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
      redis.on("error", () => {})
      await redis.connect()
      return redis
    }),
    (redis) => Effect.sync(() => redis.disconnect())
  )
