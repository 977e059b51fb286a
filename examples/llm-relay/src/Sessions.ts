/**
 * Sessions of the relay: a request with an `x-session-id` header keeps the
 * same upstream account while that account is healthy. Each account is its
 * own key of the upstream pool (the upstream's origin and the account's API
 * key), with its own circuit breaker; when an account's circuit opens, its
 * sessions are re-pinned to another account and stay there (`Affinity`
 * never moves a session back to a key that is still healthy for it).
 *
 * Two stores hold the state: the sessions themselves (user, API key
 * fingerprint, account, counts; indexed by user and by API key, for the
 * admin route) and the affinity pins. Both live in memory, or in Redis when
 * `REDIS_URL` is set, so several relays behind one balancer agree.
 */

import { createHash } from "node:crypto"
import { UpstreamPool } from "@cistern/platform-node"
import type { PoolStats } from "@cistern/pool"
import { RedisClient, RedisSessionStore } from "@cistern/redis"
import { Affinity, SessionStore } from "@cistern/session"
import { Config, ConfigError, Duration, Effect, Either, Layer, Option, Schema } from "effect"
import type { Circuit } from "./Breaker.js"

/** An upstream account: a name shown in headers and logs, and the API key sent upstream (never shown). */
export interface Account {
  readonly name: string
  readonly apiKey: string
}

/** Accounts of the stand-in upstream, used when `UPSTREAM_ACCOUNTS` is not set. */
export const demoAccounts = "account-a=sk-demo-a,account-b=sk-demo-b,account-c=sk-demo-c"

/** Reads `UPSTREAM_ACCOUNTS`: `name=apiKey` pairs separated by commas, names unique. */
export const accountsConfig: Config.Config<ReadonlyArray<Account>> = Config.string("UPSTREAM_ACCOUNTS").pipe(
  Config.withDefault(demoAccounts),
  Config.mapOrFail((text) => {
    const accounts = text
      .split(",")
      .map((pair) => pair.trim())
      .filter((pair) => pair.length > 0)
      .map((pair) => {
        const at = pair.indexOf("=")
        return at < 0 ? { name: "", apiKey: "" } : { name: pair.slice(0, at).trim(), apiKey: pair.slice(at + 1).trim() }
      })
    const names = new Set(accounts.map((a) => a.name))
    const valid =
      accounts.length > 0 &&
      names.size === accounts.length &&
      accounts.every((a) => a.name.length > 0 && a.apiKey.length > 0 && !/\s/.test(a.name + a.apiKey))
    // The message names the variable, never its value: it holds API keys.
    return valid
      ? Either.right(accounts)
      : Either.left(
          ConfigError.InvalidData(
            ["UPSTREAM_ACCOUNTS"],
            "UPSTREAM_ACCOUNTS must be name=apiKey pairs separated by commas, with unique names"
          )
        )
  })
)

/** What the relay keeps per session. */
export const Session = Schema.Struct({
  userId: Schema.String,
  /** A fingerprint of the client's API key (see {@link fingerprint}); the key itself is kept nowhere. */
  apiKey: Schema.String,
  account: Schema.String,
  requests: Schema.Number,
  /** How many times the session was moved to another account. */
  moves: Schema.Number
})

/** A session as stored. */
export type Session = typeof Session.Type

/** The relay's sessions, indexed by user and by API key fingerprint. */
export class Sessions extends SessionStore.Tag("llm-relay/Sessions")<Sessions, Session, "user" | "apiKey">() {}

/** Where each session's account is pinned. */
export class Pins extends SessionStore.Tag("llm-relay/Pins")<Pins, Affinity.Pin<string>>() {}

/** A one-way fingerprint of a client's API key: what sessions are indexed by. */
export const fingerprint = (apiKey: string): string =>
  `sha256:${createHash("sha256").update(apiKey).digest("hex").slice(0, 32)}`

/** The sessions' settings. */
export interface SessionsConfig {
  /** How long a session lives after its last request. */
  readonly ttl: Duration.Duration
  /** How long a session keeps its account at most, healthy or not. */
  readonly affinityTtl: Duration.Duration
  /** Redis's connection settings: with a `url`, sessions and pins are shared by every relay through it. */
  readonly redis: RedisClient.Options
}

const seconds = (name: string, fallback: number) =>
  Config.number(name).pipe(
    Config.validate({ message: `${name} must be a positive number of seconds`, validation: (n) => n > 0 }),
    Config.withDefault(fallback),
    Config.map((n) => Duration.seconds(n))
  )

/**
 * Reads `SESSION_TTL_SECONDS`, `AFFINITY_TTL_SECONDS` and Redis's variables
 * (`REDIS_URL` and `REDIS_PASSWORD`, redacted; `REDIS_COMMAND_TIMEOUT`,
 * `REDIS_CONNECT_TIMEOUT`).
 */
export const sessionsConfig: Config.Config<SessionsConfig> = Config.all({
  ttl: seconds("SESSION_TTL_SECONDS", 3600),
  affinityTtl: seconds("AFFINITY_TTL_SECONDS", 1800),
  redis: RedisClient.config()
})

/** Both stores: in memory, or in Redis (one client shared by the two) when `REDIS_URL` is set. */
export const layerStores = (config: SessionsConfig): Layer.Layer<Sessions | Pins> => {
  const sessions = {
    schema: Session,
    ttl: config.ttl,
    indexes: { user: (s: Session) => s.userId, apiKey: (s: Session) => s.apiKey }
  }
  // Pins carry their own TTL (set by Affinity on every pin).
  const pins = { schema: Affinity.Pin(Schema.String), ttl: config.affinityTtl }
  return Option.match(Option.fromNullable(config.redis.url), {
    onNone: () =>
      Layer.merge(
        SessionStore.layerMemory(Sessions, { ...sessions, capacity: 100_000 }),
        SessionStore.layerMemory(Pins, { ...pins, capacity: 100_000 })
      ),
    onSome: () =>
      Layer.merge(
        RedisSessionStore.layer(Sessions, { ...sessions, prefix: "llm-relay:sessions:" }),
        // Pins are written through, so another relay resolves a moved session to the same account at once.
        RedisSessionStore.layer(Pins, { ...pins, prefix: "llm-relay:pins:", writeMode: "write-through" })
      ).pipe(Layer.provide(RedisClient.layer(config.redis)))
  })
}

/**
 * The pool's health as the relay steers by it: each account's circuit is
 * the relay's own breaker's (failures within a time window; see
 * `Breaker.ts`), not the pool's. A circuit past its reset shows as
 * `half-open`: it may be given to a session, whose request probes it
 * (steering every session away from it would mean nobody ever does, and
 * the account would never come back).
 */
export const steeringHealth = (
  pool: Affinity.HealthSource,
  circuits: Effect.Effect<ReadonlyMap<string, { readonly circuit: Circuit; readonly retryAt: number | null }>>,
  keys: ReadonlyMap<string, string>
): Affinity.HealthSource => ({
  stats: Effect.zipWith(pool.stats, circuits, (stats, circuits) => {
    const seen = new Set<string>()
    const perKey: Array<PoolStats.KeyStats> = stats.perKey.map((key) => {
      const account = keys.get(key.key)
      if (account === undefined) return key
      seen.add(account)
      const circuit = circuits.get(account)
      return circuit === undefined
        ? key
        : { ...key, health: { ...key.health, breaker: circuit.circuit, retryAt: circuit.retryAt } }
    })
    // An account whose key the pool dropped (no connection left) still has its circuit.
    for (const [key, account] of keys) {
      const circuit = circuits.get(account)
      if (seen.has(account) || circuit === undefined || circuit.circuit === "closed") continue
      perKey.push({
        key,
        max: 0,
        size: 0,
        idle: 0,
        inUse: 0,
        creating: 0,
        waiting: 0,
        created: 0,
        destroyed: 0,
        timeouts: 0,
        failures: 0,
        createdAt: 0,
        lastUsed: 0,
        checking: 0,
        health: {
          state: "open",
          breaker: circuit.circuit,
          consecutiveFailures: 0,
          retryAt: circuit.retryAt,
          lastCheck: null,
          history: [],
          transitions: []
        }
      })
    }
    return { ...stats, perKey }
  })
})

/**
 * The accounts as pool keys, and the affinity that pins sessions to them.
 * A new or moved session gets the first account, in an order that starts at
 * a place given by its id (so sessions spread over the accounts), whose
 * circuit is not open and that is not the one it leaves.
 */
export const makeAffinity = (
  upstream: string,
  accounts: ReadonlyArray<Account>,
  ttl: Duration.Duration,
  circuits: Effect.Effect<ReadonlyMap<string, { readonly circuit: Circuit; readonly retryAt: number | null }>>
) =>
  Effect.gen(function* () {
    const pool = yield* UpstreamPool.UpstreamPool
    const pins = yield* Pins
    const keys = new Map(accounts.map((a) => [a.name, UpstreamPool.key(upstream, { credential: a.apiKey })]))
    const keyOf = (name: string): UpstreamPool.UpstreamKey => keys.get(name)!
    const describeKey = (name: string) => UpstreamPool.describeKey(keyOf(name))
    const names = accounts.map((a) => a.name)
    const start = (id: string) => createHash("sha256").update(id).digest().readUInt32BE(0) % names.length
    const health = steeringHealth(pool, circuits, new Map(names.map((name) => [describeKey(name), name])))
    const affinity = Affinity.make({
      pool: health,
      store: pins,
      describeKey,
      ttl,
      isKnown: (name) => keys.has(name),
      choose: ({ sessionId, isOpen, previous, reason }) =>
        Effect.sync(() => {
          // A pin past its TTL on a healthy account is simply renewed.
          if (reason === "expired" && Option.isSome(previous) && !isOpen(previous.value)) return previous.value
          const from = start(sessionId)
          const order = names.map((_, i) => names[(from + i) % names.length]!)
          const healthy = order.filter((name) => !isOpen(name))
          // All open: stay (the pool answers CircuitOpen at once) rather than hop around.
          return healthy.find((name) => !Option.contains(previous, name)) ?? healthy[0] ?? order[0]!
        })
    })
    return { affinity, health, keyOf, describeKey, names }
  })
