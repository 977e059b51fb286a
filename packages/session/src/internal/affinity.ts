import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { Affinity, Options, Pin, Reason, Resolved } from "../Affinity.js"
import type { SessionSchemaError } from "../SessionError.js"
import { positiveMillis } from "./memoryStore.js"

/** @internal */
export const make = <K, E, R>(options: Options<K, E, R>): Affinity<K, E, R> => {
  const ttl = positiveMillis("ttl", options.ttl)
  // Pins outlive their TTL by as much again, so a resolve after the TTL can say "expired" rather than "new".
  const storeTtl = { ttl: ttl * 2 }
  const isKnown = options.isKnown ?? (() => true)

  const openKeys = Effect.map(options.pool.stats, (stats) => {
    const open = new Set<string>()
    for (const key of stats.perKey) {
      if (key.health.breaker === "open") open.add(key.key)
    }
    return open
  })

  const pin = (sessionId: string, key: K) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      options.store.set(sessionId, { key, pinnedAt: now, until: now + ttl }, storeTtl)
    )

  const resolve = (sessionId: string): Effect.Effect<Resolved<K>, E | SessionSchemaError, R> =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const current = yield* options.store.get(sessionId)
      const open = yield* openKeys
      const isOpen = (key: K) => open.has(options.describeKey(key))
      let reason: Exclude<Reason, "kept"> = "new"
      if (Option.isSome(current)) {
        const { key, until } = current.value
        if (!isKnown(key)) reason = "gone"
        else if (isOpen(key)) reason = "open"
        else if (until <= now) reason = "expired"
        else return { key, reason: "kept", previous: Option.none() }
      }
      const previous = Option.map(current, (p) => p.key)
      const key = yield* options.choose({ sessionId, reason, previous, isOpen })
      yield* pin(sessionId, key)
      yield* Effect.logDebug("session re-pinned").pipe(
        Effect.annotateLogs({ package: "@cistern/session", module: "Affinity", reason, key: options.describeKey(key) })
      )
      return { key, reason, previous }
    })

  const current = (sessionId: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(
        options.store.get(sessionId),
        Option.filter((p: Pin<K>) => p.until > now)
      )
    )

  return {
    resolve,
    pin,
    unpin: (sessionId) => options.store.delete(sessionId),
    current
  }
}
