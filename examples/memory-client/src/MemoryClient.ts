/**
 * The long-lived client to the memory service that a service keeps for its
 * whole life: one MCP connection, pinged every `MEM0_HEALTH_CHECK_INTERVAL`,
 * kept alive every `MEM0_HEARTBEAT_INTERVAL`, rebuilt (and its API key
 * re-validated) when it breaks, and calls retried with exponential backoff on
 * connection failures. Its health, last check time and rebuild count are a
 * read away (`status`, or `changes` to watch them).
 *
 * None of it is a timer, a thread or a `finally` of its own: the pool runs the
 * checks and heartbeats on `Schedule`s, destroys and re-creates the
 * connection, and closes it with the scope.
 */
import { randomUUID } from "node:crypto"
import type { PoolError, PoolStats } from "@cistern/pool"
import {
  Cause,
  Clock,
  Context,
  Effect,
  Layer,
  Option,
  type Redacted,
  Schedule,
  type Scope,
  Stream,
  SubscriptionRef
} from "effect"
import * as MemoryConnection from "./client/MemoryConnection.js"
import { isConnectionError, type MemoryError } from "./client/MemoryError.js"
import type { Settings } from "./Settings.js"
import * as SharedConnection from "./SharedConnection.js"

/** The connection's health as the client last saw it. Times are epoch milliseconds from the `Clock`. */
export interface ConnectionStatus {
  /** False from a failed check, heartbeat, call or connection attempt until the next success. */
  readonly healthy: boolean
  readonly lastCheckAt: number | null
  readonly lastCheckOk: boolean | null
  readonly lastHeartbeatAt: number | null
  readonly checks: number
  readonly heartbeats: number
  /** Connections opened and validated: the first one, then one per rebuild. */
  readonly connections: number
  /** `connections - 1` once connected: how often a broken connection was replaced. */
  readonly rebuilds: number
  /** Every attempt to connect, failed ones included. */
  readonly connectAttempts: number
  /** When the last attempts started (at most 16), to see the backoff between them. */
  readonly recentAttempts: ReadonlyArray<number>
  /** The account the API key belongs to, from the last validation. */
  readonly account: string | null
  readonly lastError: string | null
}

const initial: ConnectionStatus = {
  healthy: false,
  lastCheckAt: null,
  lastCheckOk: null,
  lastHeartbeatAt: null,
  checks: 0,
  heartbeats: 0,
  connections: 0,
  rebuilds: 0,
  connectAttempts: 0,
  recentAttempts: [],
  account: null,
  lastError: null
}

/** The client a service uses. */
export interface MemoryClient {
  /** Stores a memory; a retried add carries the same idempotency key, so it is stored once. */
  readonly addMemory: (
    text: string,
    options?: { readonly userId?: string | undefined }
  ) => Effect.Effect<MemoryConnection.AddResult, MemoryError | PoolError.PoolError>
  readonly searchMemories: (
    query: string,
    options?: { readonly userId?: string | undefined; readonly limit?: number | undefined }
  ) => Effect.Effect<MemoryConnection.SearchResult, MemoryError | PoolError.PoolError>
  /** Connects now and validates the API key (what a service does at startup). */
  readonly connect: Effect.Effect<void, MemoryError | PoolError.PoolError>
  readonly status: Effect.Effect<ConnectionStatus>
  /** The status, then every change of it. */
  readonly changes: Stream.Stream<ConnectionStatus>
  /** The pool's counts, check history and configuration. */
  readonly stats: Effect.Effect<PoolStats.PoolStats>
}

/** The client as a service. */
export class Memory extends Context.Tag("example/MemoryClient")<Memory, MemoryClient>() {}

/** Where the service is and how to hold the connection. */
export interface Options {
  /** The memory service's MCP endpoint. */
  readonly url: string
  readonly apiKey: Redacted.Redacted<string>
  readonly settings: Settings
}

/** The memory client's retry: `retryDelay × backoffFactor^attempt`, at most `maxRetries` times. */
export const retrySchedule = (settings: Settings): Schedule.Schedule<unknown, unknown> =>
  Schedule.exponential(settings.retryDelay, settings.backoffFactor).pipe(
    Schedule.intersect(Schedule.recurs(settings.maxRetries))
  )

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** Makes the client; the connection and its background checks live as long as the scope. */
export const make = (options: Options): Effect.Effect<MemoryClient, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { settings } = options
    const state = yield* SubscriptionRef.make(initial)
    const update = (f: (s: ConnectionStatus) => ConnectionStatus) => SubscriptionRef.update(state, f)
    const failed = (error: unknown) => update((s) => ({ ...s, healthy: false, lastError: describe(error) }))

    const acquire = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const { connectAttempts } = yield* SubscriptionRef.updateAndGet(state, (s) => ({
        ...s,
        connectAttempts: s.connectAttempts + 1,
        recentAttempts: [...s.recentAttempts, now].slice(-16)
      }))
      const connection = yield* MemoryConnection.connect({
        url: options.url,
        apiKey: options.apiKey,
        requestTimeout: settings.requestTimeout,
        serial: connectAttempts,
        sockets: settings.maxConcurrentCalls
      }).pipe(Effect.tapError(failed))
      const { rebuilds } = yield* SubscriptionRef.updateAndGet(state, (s) => ({
        ...s,
        healthy: true,
        connections: s.connections + 1,
        rebuilds: s.connections,
        account: connection.account
      }))
      if (rebuilds > 0) {
        yield* Effect.logInfo("memory service connection rebuilt; API key validated").pipe(
          Effect.annotateLogs({ rebuilds, account: connection.account })
        )
      }
      return connection
    })

    // After a failed check or heartbeat the pool destroys the connection; with auto-rebuild on, a new one is
    // made (and its key validated) right away, once: if that fails too, the next call tries again.
    const scope = yield* Effect.scope
    let held: SharedConnection.SharedConnection<MemoryConnection.MemoryConnection, MemoryError> | undefined
    // A lease: it waits for the failing connection to be destroyed, then makes the new one.
    const rebuild = Effect.suspend(() => held?.use(() => Effect.void) ?? Effect.void).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("rebuilding the memory service connection failed; the next call tries again", cause)
      ),
      Effect.forkIn(scope),
      Effect.asVoid
    )

    const checked = (kind: "check" | "heartbeat") => (connection: MemoryConnection.MemoryConnection) =>
      Effect.flatMap(Effect.exit(connection.ping), (exit) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          update((s) => {
            const ok = exit._tag === "Success"
            const seen =
              kind === "check"
                ? { lastCheckAt: now, lastCheckOk: ok, checks: s.checks + 1 }
                : { lastHeartbeatAt: now, heartbeats: s.heartbeats + 1 }
            return ok
              ? { ...s, ...seen, healthy: true }
              : {
                  ...s,
                  ...seen,
                  healthy: false,
                  lastError: exit._tag === "Failure" ? describe(Cause.squash(exit.cause)) : null
                }
          })
        ).pipe(
          Effect.zipRight(exit._tag === "Failure" && settings.autoRebuild ? rebuild : Effect.void),
          Effect.zipRight(exit)
        )
      )

    const connection = yield* SharedConnection.make({
      name: "memory-service",
      acquire,
      healthCheck: { check: checked("check"), timeout: settings.connectionTimeout },
      healthCheckInterval: settings.healthCheckInterval,
      heartbeat: { beat: checked("heartbeat"), timeout: settings.connectionTimeout },
      heartbeatInterval: settings.heartbeatInterval,
      isConnectionError,
      createTimeout: settings.connectionTimeout,
      retry: settings.autoRebuild ? retrySchedule(settings) : false,
      maxConcurrentCalls: settings.maxConcurrentCalls
    })
    held = connection

    const markHealthy = SubscriptionRef.updateSome(state, (s) =>
      s.healthy ? Option.none() : Option.some({ ...s, healthy: true })
    )

    /** One call on the connection: a connection failure marks it unhealthy and is logged before the pool retries. */
    const run = <A>(f: (c: MemoryConnection.MemoryConnection) => Effect.Effect<A, MemoryError>) =>
      connection.use((c) =>
        f(c).pipe(
          Effect.tapError((error) =>
            isConnectionError(error)
              ? Effect.zipRight(
                  failed(error),
                  Effect.logWarning("memory service connection lost; rebuilding").pipe(
                    Effect.annotateLogs({ reason: error._tag === "MemoryUnavailable" ? error.reason : error._tag })
                  )
                )
              : Effect.void
          ),
          Effect.zipLeft(markHealthy)
        )
      )

    return {
      addMemory: (text, addOptions) =>
        // The key is drawn once, outside the retries: every delivery of this add carries it.
        Effect.flatMap(
          Effect.sync(() => randomUUID()),
          (idempotencyKey) => run((c) => c.addMemory({ text, userId: addOptions?.userId, idempotencyKey }))
        ),
      searchMemories: (query, searchOptions) =>
        run((c) => c.searchMemories({ query, userId: searchOptions?.userId, limit: searchOptions?.limit })),
      // A lease, so connecting at startup retries connection failures like any call (a wrong key still fails at once).
      connect: connection.use(() => Effect.void),
      status: SubscriptionRef.get(state),
      changes: state.changes,
      stats: connection.stats
    } satisfies MemoryClient
  })

/** Provides the client as {@link Memory}. */
export const layer = (options: Options): Layer.Layer<Memory> => Layer.scoped(Memory, make(options))

/** Waits until the status satisfies `predicate` (woken by each change, never by polling). */
export const awaitStatus = (
  client: MemoryClient,
  predicate: (status: ConnectionStatus) => boolean
): Effect.Effect<ConnectionStatus> =>
  client.changes.pipe(
    Stream.filter(predicate),
    Stream.runHead,
    Effect.flatMap((found) => (Option.isSome(found) ? Effect.succeed(found.value) : Effect.never))
  )
