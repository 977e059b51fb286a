/**
 * The cluster budget of one instance: its lease (a heartbeat on a
 * `Schedule`, a local deadline), its waiters (FIFO per tenant, woken by a
 * local release, a `freed` notification over pub/sub, or a jittered retry),
 * the permits it holds, and those it granted without Redis (by its `mode`)
 * until they are counted there.
 *
 * @internal
 */
import * as os from "node:os"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as PubSub from "effect/PubSub"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Redis } from "ioredis"
import {
  BudgetExhausted,
  BudgetUnavailable,
  type LeaseLost,
  type Mode,
  type Options,
  type Permit,
  type PermitOptions,
  type Service,
  type Stats
} from "../ClusterBudget.js"
import { RedisClient } from "../RedisClient.js"
import type { RedisError } from "../RedisError.js"
import * as BudgetClient from "./budgetClient.js"
import * as metrics from "./budgetMetrics.js"
import type { Caller, Op, Reply } from "./budgetModel.js"
import { registerBudget } from "./budgetRegistry.js"

/** Settings no user sets. @internal */
export interface Internals {
  /** Run the test build of the script, with the time from the Effect `Clock` (so `TestClock` drives expiry too). */
  readonly testClock?: boolean | undefined
}

const annotations = { package: "@cistern/redis", module: "ClusterBudget" }

const millis = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput): number =>
  Duration.toMillis(Duration.decode(input ?? fallback))

interface Waiter {
  readonly turn: Deferred.Deferred<void>
}

/** What one call of `permit` last heard: the figures for `BudgetExhausted`, or why Redis could not help. */
interface Last {
  reply: Reply | undefined
  unavailable: BudgetUnavailable | undefined
  /** Whether an acquire that failed may have reached Redis (and been granted there after all). */
  maybeSent: boolean
}

/**
 * The client refused the command before writing it (no connection, no offline queue): Redis never saw
 * it, so a permit id it carried needs no release there. Any other failure (a timeout, a connection that
 * broke with the command in flight) may have run it.
 */
const neverSent = (e: RedisError): boolean =>
  e.reason === "connection" && /Stream isn't writeable|enableOfflineQueue/i.test(e.detail)

/** @internal */
export const make = (options: Options, internals: Internals = {}) =>
  Effect.gen(function* () {
    const name = options.name
    const limit = options.total
    if (!Number.isInteger(limit) || limit < 1)
      return yield* Effect.dieMessage(`ClusterBudget "${name}": total must be a positive integer, got ${limit}`)
    const perTenant = options.perTenant
    const tenantLimitOf = (tenant: string): number =>
      perTenant === undefined ? limit : typeof perTenant === "number" ? perTenant : perTenant(tenant)
    const leaseMillis = millis(options.leaseTime, "15 seconds")
    const heartbeatMillis = millis(options.heartbeatInterval, Duration.millis(leaseMillis / 3))
    const acquireTimeout = Duration.decode(options.acquireTimeout ?? "10 seconds")
    const retryMin = millis(options.retryDelay?.min, "50 millis")
    const retryMax = Math.max(retryMin, millis(options.retryDelay?.max, "1 second"))
    const prefix = options.prefix ?? "cistern:budget:"
    if (/[{}]/.test(prefix) || /[{}]/.test(name)) {
      return yield* Effect.dieMessage(
        `ClusterBudget "${name}": prefix and name must not contain braces (they would break the hash tag)`
      )
    }
    const suffix = (yield* Random.nextInt).toString(36).replace("-", "")
    const instanceId = options.instanceId ?? `${os.hostname()}-${process.pid}-${suffix}`
    if (instanceId.includes("|"))
      return yield* Effect.dieMessage(`ClusterBudget "${name}": instanceId must not contain "|"`)
    /** Past this long without a renewal, the instance gives its permits up on its own (before others reclaim them). */
    const margin = Math.min(Math.max(1_000, leaseMillis / 10), leaseMillis / 4)
    const mode: Mode = options.mode ?? "fail-closed"
    if (mode !== "fail-closed" && mode !== "local-share" && mode !== "unlimited")
      return yield* Effect.dieMessage(
        `ClusterBudget "${name}": mode must be "fail-closed", "local-share" or "unlimited", got ${String(mode)}`
      )
    const positive = (n: number | undefined, what: string) =>
      n === undefined || (Number.isInteger(n) && n >= 1)
        ? Effect.void
        : Effect.dieMessage(`ClusterBudget "${name}": ${what} must be a positive integer, got ${n}`)
    yield* positive(options.localShare, "localShare")
    if (typeof options.localTenantShare === "number") yield* positive(options.localTenantShare, "localTenantShare")

    const client = yield* RedisClient
    const testClock = internals.testClock === true
    const budget = BudgetClient.make(client, { prefix, name, testClock })
    const lostHub = yield* Effect.acquireRelease(PubSub.unbounded<LeaseLost>(), PubSub.shutdown)
    const heartbeatLock = yield* Effect.makeSemaphore(1)

    // Mutable state, owned by this closure.
    let epoch = ""
    let sequence = 0
    let lastRenewal = yield* Clock.currentTimeMillis
    let state: Stats["state"] = "ok"
    let figures = { used: 0, wantsElsewhere: 0, over: 0 }
    /** Permits Redis counts for this instance: id → tenant. */
    const held = new Map<string, string>()
    /** Permits granted while Redis could not be asked, not counted there yet: id → tenant. */
    const offline = new Map<string, string>()
    /** Offline permits whose acquire Redis never saw: their release needs no call. */
    const unseen = new Set<string>()
    /** Held permits that were granted without Redis and counted later: an excess above the limit is theirs. */
    const adopted = new Set<string>()
    let instances = 0
    const pendingReleases = new Set<string>()
    const queues = new Map<string, Array<Waiter>>()
    let waiters = 0
    let wake = Deferred.unsafeMake<void>(FiberId.none)
    const counters = {
      granted: 0,
      released: 0,
      exhausted: 0,
      unavailable: 0,
      reclaimed: 0,
      leasesLost: 0,
      failOpen: 0,
      reasserted: 0
    }

    const notify = Effect.sync(() => {
      const previous = wake
      wake = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(previous, Effect.void)
    })

    const call = (op: Op): Effect.Effect<Reply, RedisError> =>
      Effect.gen(function* () {
        const caller: Caller = { instance: instanceId, epoch, leaseMillis }
        const clock = testClock ? yield* Clock.currentTimeMillis : undefined
        const sent = yield* Clock.currentTimeMillis
        const reply = yield* budget
          .call(caller, op, clock)
          .pipe(
            Effect.ensuring(
              Effect.flatMap(Clock.currentTimeMillis, (now) =>
                Metric.update(Metric.tagged(tagged(metrics.redisSeconds), "op", op._tag), (now - sent) / 1_000)
              )
            )
          )
        counters.reclaimed += reply.reclaimed
        if (reply.reclaimed > 0) yield* Metric.incrementBy(tagged(metrics.reclaimed), reply.reclaimed)
        // Reclaimed permits are free now: this instance's own waiters try again (others hear `freed`).
        if (reply.reclaimed > 0) yield* notify
        figures = { used: reply.used, wantsElsewhere: reply.wantsElsewhere, over: figures.over }
        instances = reply.instances
        state = reply.status === "learning" ? "learning" : "ok"
        // A holder adopts a new epoch only from a heartbeat, which re-asserts what it holds (or an adopt, which counts it).
        if (op._tag === "heartbeat" || op._tag === "adopt" || held.size === 0 || reply.status === "lost")
          epoch = reply.epoch
        yield* sampleGauges
        return reply
      }).pipe(
        Effect.tapError(() =>
          Effect.zipRight(
            Effect.sync(() => void (state = "unavailable")),
            sampleGauges
          )
        )
      )

    const tagged = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>) => Metric.tagged(metric, "budget", name)
    const sampleGauges = Effect.suspend(() =>
      Effect.all(
        [
          Metric.set(tagged(metrics.limit), limit),
          Metric.set(tagged(metrics.state), state === "ok" ? 0 : state === "learning" ? 1 : 2),
          Metric.set(tagged(metrics.used), figures.used),
          Metric.set(tagged(metrics.held), held.size + offline.size),
          Metric.set(tagged(metrics.offline), offline.size),
          Metric.set(tagged(metrics.waiters), waiters),
          Metric.set(tagged(metrics.wantsElsewhere), figures.wantsElsewhere)
        ],
        { discard: true }
      )
    )
    const acquired = (result: "granted" | "exhausted" | "unavailable") =>
      Metric.increment(Metric.tagged(tagged(metrics.acquires), "result", result))

    const loseLease = (detectedBy: LeaseLost["detectedBy"]) =>
      Effect.gen(function* () {
        const permits = held.size
        // Nothing held, nothing to retire: the instance simply registers again.
        if (permits === 0) return
        // The permits stay with their scopes: when the owner closes their connections, each is released
        // (a no-op for those Redis already reclaimed; after a Redis pause Redis may still count them, and
        // then it keeps counting them until their connections are gone, as it should).
        // In "unlimited" mode only local limits apply: the connections are kept, and their permits are
        // counted again like those granted without Redis (at once when Redis told us, else when it answers).
        if (mode === "unlimited") for (const [id, tenant] of held) offline.set(id, tenant)
        held.clear()
        adopted.clear()
        figures = { ...figures, over: 0 }
        counters.leasesLost++
        yield* Metric.increment(tagged(metrics.leasesLost))
        if (mode === "unlimited") {
          yield* Effect.logWarning(
            "Budget lease lost; unlimited mode keeps the connections and counts them again"
          ).pipe(Effect.annotateLogs({ ...annotations, budget: name, instanceId, permits, detectedBy }))
          return
        }
        const event: LeaseLost = { budget: name, instanceId, permits, detectedBy }
        yield* Effect.logWarning("Budget lease lost: close the connections its permits covered").pipe(
          Effect.annotateLogs({ ...annotations, budget: name, instanceId, permits, detectedBy })
        )
        yield* PubSub.publish(lostHub, event)
      })

    const replayReleases = Effect.gen(function* () {
      for (const id of [...pendingReleases]) {
        yield* call({ _tag: "release", id })
        pendingReleases.delete(id)
      }
    })

    const heartbeat = heartbeatLock.withPermits(1)(
      Effect.gen(function* () {
        const sentAt = yield* Clock.currentTimeMillis
        const reply = yield* call({ _tag: "heartbeat", waiting: waiters, limit, permits: [...held] })
        if (reply.status === "lost") yield* loseLease("heartbeat")
        else {
          lastRenewal = sentAt
          figures = { ...figures, over: Math.max(reply.over, excessOf(reply)) }
        }
        // Renewal first: releases left from an outage are replayed after it, and one that fails again
        // stays pending for the next beat without costing the lease. Then what was granted without
        // Redis is counted there.
        yield* Effect.ignore(replayReleases)
        if (offline.size > 0) yield* Effect.ignore(reassert)
      })
    )

    /**
     * The part of an excess above the limit that is this instance's doing: permits it granted without
     * Redis and re-asserted. Reported in `over`, so its pool closes that many idle connections first.
     */
    const excessOf = (reply: Reply) => Math.min(Math.max(0, reply.used - limit), adopted.size)

    /**
     * Counts the permits granted without Redis there. They are kept whatever the count (their
     * connections exist); a permit given back while the call was in flight is released again after it,
     * since the adopt may have counted it after its release ran.
     */
    const reassert = Effect.gen(function* () {
      const permits = [...offline]
      const reply = yield* call({ _tag: "adopt", permits })
      let counted = 0
      for (const [id, tenant] of permits) {
        if (offline.delete(id)) {
          unseen.delete(id)
          held.set(id, tenant)
          adopted.add(id)
          counted++
        } else {
          yield* call({ _tag: "release", id }).pipe(
            Effect.catchAll(() => Effect.sync(() => void pendingReleases.add(id)))
          )
        }
      }
      counters.reasserted += counted
      const excess = excessOf(reply)
      figures = { ...figures, over: Math.max(figures.over, excess) }
      yield* sampleGauges
      const log = excess > 0 ? Effect.logWarning : Effect.logInfo
      yield* log(
        excess > 0
          ? "Permits granted without Redis are counted again; the budget is above its limit: close idle connections first"
          : "Permits granted without Redis are counted again"
      ).pipe(
        Effect.annotateLogs({
          ...annotations,
          budget: name,
          permits: counted,
          used: reply.used,
          limit,
          over: figures.over
        })
      )
    })

    /** Re-asserts at once (outside the heartbeat), one re-assertion at a time. */
    const reassertNow = heartbeatLock.withPermits(1)(
      Effect.suspend(() => (offline.size > 0 ? Effect.ignore(reassert) : Effect.void))
    )

    const checkDeadline = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (held.size > 0 && now >= lastRenewal + leaseMillis - margin) yield* loseLease("deadline")
    })

    /** A local release frees capacity: the waiters of this instance try again at once. */
    const release = (id: string) =>
      Effect.gen(function* () {
        // An id is in one of the two maps at most.
        const wasHeld = held.delete(id) || offline.delete(id)
        adopted.delete(id)
        // One permit fewer here is one fewer above the fair share (or the limit): `over` stays true
        // between heartbeats, so a pool acting on it does not close the same excess twice.
        if (wasHeld && figures.over > 0) figures = { ...figures, over: figures.over - 1 }
        // Nothing to tell Redis (and nothing to keep pending through an outage, however many permits churn).
        if (unseen.delete(id)) {
          counters.released++
          if (wasHeld || waiters > 0) yield* notify
          return
        }
        yield* call({ _tag: "release", id }).pipe(
          Effect.tap((reply) => Effect.sync(() => void (reply.status === "released" && counters.released++))),
          Effect.catchAll(() => Effect.sync(() => void pendingReleases.add(id)))
        )
        if (wasHeld || waiters > 0) yield* notify
      })

    // Release notifications from other instances. A subscriber connection of its own (pub/sub takes a
    // connection over); it may queue its SUBSCRIBE until connected and re-subscribes after reconnects.
    const subscriber = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const s = client.redis.duplicate({ enableOfflineQueue: true }) as Redis
        s.on("error", () => {})
        return s
      }),
      (s) => Effect.sync(() => s.disconnect(false))
    )
    subscriber.on("message", () => {
      Effect.runSync(notify)
    })
    // Until the first SUBSCRIBE succeeds (Redis may be down at start), waiters rely on their retries.
    yield* Effect.tryPromise(() => subscriber.subscribe(budget.keys.channel)).pipe(
      Effect.timeout(Duration.millis(client.commandTimeoutMillis)),
      Effect.retry(Schedule.spaced(Duration.millis(heartbeatMillis))),
      Effect.ignore,
      Effect.forkScoped
    )

    // Leaving gives back what this instance still holds (the scope is closing: so are its connections).
    yield* Effect.addFinalizer(() =>
      call({ _tag: "leave" }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.logWarning("Could not leave the budget: its permits come back when the lease runs out", cause).pipe(
            Effect.annotateLogs({ ...annotations, budget: name })
          )
        )
      )
    )
    // A failed beat is retried four times as often, so one slow reply does not cost the lease;
    // one warning when beats start failing, one line when they succeed again.
    let failing = false
    const beat = heartbeat.pipe(
      Effect.tap(() =>
        failing
          ? Effect.zipRight(
              Effect.sync(() => void (failing = false)),
              Effect.logInfo("Budget heartbeat succeeds again").pipe(
                Effect.annotateLogs({ ...annotations, budget: name })
              )
            )
          : Effect.void
      ),
      Effect.tapErrorCause((cause) =>
        failing
          ? Effect.void
          : Effect.zipRight(
              Effect.sync(() => void (failing = true)),
              Effect.logWarning("Budget heartbeat failed; retrying", cause).pipe(
                Effect.annotateLogs({ ...annotations, budget: name })
              )
            )
      ),
      Effect.retry(Schedule.spaced(Duration.millis(heartbeatMillis / 4)))
    )
    // `fixed`, not `spaced`: a slow reply does not push the next beat back.
    yield* beat.pipe(Effect.repeat(Schedule.fixed(Duration.millis(heartbeatMillis))), Effect.forkScoped)
    yield* checkDeadline.pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(Math.max(10, margin / 2)))),
      Effect.forkScoped
    )

    const join = (tenant: string) =>
      Effect.sync(() => {
        const waiter: Waiter = { turn: Deferred.unsafeMake<void>(FiberId.none) }
        let queue = queues.get(tenant)
        if (queue === undefined) queues.set(tenant, (queue = []))
        queue.push(waiter)
        waiters++
        if (queue.length === 1) Deferred.unsafeDone(waiter.turn, Effect.void)
        return waiter
      })

    const leave = (tenant: string, waiter: Waiter) =>
      Effect.sync(() => {
        const queue = queues.get(tenant)
        if (queue === undefined) return
        const index = queue.indexOf(waiter)
        if (index < 0) return
        queue.splice(index, 1)
        waiters--
        if (queue.length === 0) queues.delete(tenant)
        else if (index === 0) Deferred.unsafeDone(queue[0]!.turn, Effect.void)
      })

    /** This instance's share while Redis cannot be asked (`"local-share"` mode), if one is known. */
    const localShare = (): number | undefined =>
      options.localShare ?? (instances > 0 ? Math.ceil(limit / instances) : undefined)
    const localTenantShare = (tenant: string, share: number): number => {
      const explicit = options.localTenantShare
      if (explicit !== undefined) return typeof explicit === "number" ? explicit : explicit(tenant)
      return Math.ceil((tenantLimitOf(tenant) * share) / limit)
    }
    const heldFor = (tenant: string): number => {
      let n = 0
      for (const t of held.values()) if (t === tenant) n++
      for (const t of offline.values()) if (t === tenant) n++
      return n
    }

    /**
     * Whether the mode lets this instance grant a permit without Redis: `undefined` if so, otherwise why
     * not (`share` unknown means it should fail at once, as when closed).
     */
    const withoutRedis = (tenant: string): { readonly detail: string; readonly wait: boolean } | undefined => {
      if (mode === "unlimited") return undefined
      if (mode === "fail-closed") return { detail: "fail-closed", wait: false }
      const share = localShare()
      if (share === undefined) return { detail: "no local share known yet (Redis never answered)", wait: false }
      const tenantShare = localTenantShare(tenant, share)
      if (held.size + offline.size >= share) return { detail: `the local share (${share}) is in use`, wait: true }
      if (heldFor(tenant) >= tenantShare)
        return { detail: `the tenant's local share (${tenantShare}) is in use`, wait: true }
      return undefined
    }

    const grantWithoutRedis = (id: string, tenant: string, maybeSent: boolean) =>
      Effect.gen(function* () {
        if (offline.size === 0)
          yield* Effect.logWarning("Granting permits without Redis; they are counted there when it answers").pipe(
            Effect.annotateLogs({ ...annotations, budget: name, mode })
          )
        offline.set(id, tenant)
        if (!maybeSent) unseen.add(id)
        counters.granted++
        counters.failOpen++
        yield* acquired("granted")
        yield* Metric.increment(Metric.tagged(tagged(metrics.failOpen), "mode", mode))
        yield* sampleGauges
      })

    /** Runs the caller's `onFull` hook; a defect is logged and counts as "closed nothing". */
    const runOnFull = (onFull: Effect.Effect<boolean>) =>
      onFull.pipe(
        Effect.catchAllDefect((defect) =>
          Effect.as(
            Effect.logWarning("The onFull hook of a permit failed", defect).pipe(
              Effect.annotateLogs({ ...annotations, budget: name })
            ),
            false
          )
        )
      )

    /** The head of its tenant's queue asks until it gets a permit. */
    const attempt = (id: string, tenant: string, last: Last, onFull: Effect.Effect<boolean> | undefined) =>
      Effect.gen(function* () {
        const tenantLimit = tenantLimitOf(tenant)
        let delay = retryMin
        let hookRan = onFull === undefined
        while (true) {
          const signal = wake
          const result = yield* Effect.either(
            call({
              _tag: "acquire",
              id,
              tenant,
              limit,
              tenantLimit,
              held: held.size,
              waiting: waiters
            })
          )
          let full: boolean
          if (Either.isLeft(result)) {
            const e = result.left
            last.maybeSent ||= !neverSent(e)
            // Redis answered with an error: it is there, so no mode applies; fail as closed.
            const refusal: { readonly detail: string; readonly wait: boolean } | undefined =
              e.reason === "command" ? { detail: "fail-closed", wait: false } : withoutRedis(tenant)
            if (refusal === undefined) {
              yield* grantWithoutRedis(id, tenant, last.maybeSent)
              return
            }
            const error = new BudgetUnavailable({
              budget: name,
              tenant,
              reason: e.reason,
              detail: refusal.detail === "fail-closed" ? e.detail : `${e.detail}; ${refusal.detail}`
            })
            if (!refusal.wait) return yield* Effect.fail(error)
            // Local share in use: wait for one of this instance's permits to come back (or Redis).
            last.unavailable = error
            full = true
          } else {
            const reply = result.right
            last.reply = reply
            last.unavailable = undefined
            // Redis answers again: what was granted without it is counted now, not at the next beat.
            if (offline.size > 0) yield* reassertNow
            if (reply.status === "granted") {
              held.set(id, tenant)
              counters.granted++
              yield* acquired("granted")
              yield* sampleGauges
              return
            }
            if (reply.status === "lost") {
              yield* loseLease("acquire")
              continue
            }
            // Redis lost its data and this instance still holds permits: re-assert them now rather than at the next beat.
            if (reply.epoch !== epoch && held.size > 0) yield* Effect.ignore(heartbeat)
            full = reply.status === "exhausted"
          }
          if (full && !hookRan) {
            hookRan = true
            // The pool closed one of its idle connections: its permit comes back when that connection's
            // scope closes, and that local release wakes this call. No backoff for this round.
            if (yield* runOnFull(onFull!)) {
              yield* Deferred.await(signal).pipe(Effect.timeout(Duration.millis(retryMin)), Effect.ignore)
              continue
            }
          }
          const jitter = yield* Random.nextRange(0.5, 1)
          yield* Deferred.await(signal).pipe(Effect.timeout(Duration.millis(delay * jitter)), Effect.ignore)
          delay = Math.min(retryMax, delay * 2)
        }
      })

    const permit = (
      tenant = "*",
      permitOptions?: PermitOptions
    ): Effect.Effect<Permit, BudgetExhausted | BudgetUnavailable, Scope.Scope> =>
      Effect.gen(function* () {
        const id = `${instanceId}:${++sequence}`
        const start = yield* Clock.currentTimeMillis
        // Registered before the first call: a reply lost to a timeout or an interruption may still have
        // granted the permit, and releasing an id Redis does not know is harmless.
        let released = false
        const giveBack = Effect.suspend(() => {
          if (released) return Effect.void
          released = true
          return release(id)
        })
        yield* Effect.addFinalizer(() => giveBack)
        const last: Last = { reply: undefined, unavailable: undefined, maybeSent: false }
        const timedOut = Effect.gen(function* () {
          // The last try found Redis unreachable and the local share in use: that is the reason, not a full budget.
          if (last.unavailable !== undefined) return last.unavailable
          const now = yield* Clock.currentTimeMillis
          const reply = last.reply
          counters.exhausted++
          yield* acquired("exhausted")
          return new BudgetExhausted({
            budget: name,
            tenant,
            used: reply?.used ?? figures.used,
            limit,
            tenantUsed: reply?.tenantUsed ?? 0,
            tenantLimit: tenantLimitOf(tenant),
            wantsElsewhere: reply?.wantsElsewhere ?? figures.wantsElsewhere,
            reason: reply?.status === "learning" ? "learning" : "full",
            waited: Duration.millis(now - start)
          })
        })
        yield* Effect.acquireUseRelease(
          join(tenant),
          (waiter) => Effect.zipRight(Deferred.await(waiter.turn), attempt(id, tenant, last, permitOptions?.onFull)),
          (waiter) => leave(tenant, waiter)
        ).pipe(
          Effect.timeout(acquireTimeout),
          Effect.catchTag("TimeoutException", () => Effect.flatMap(timedOut, Effect.fail)),
          Effect.tapError((e) => {
            if (e._tag === "BudgetExhausted") return giveBack
            // Redis is not answering: the release waits for it (replayed by the heartbeat) instead of failing
            // late; an acquire the client never wrote needs none.
            counters.unavailable++
            released = true
            return Effect.zipRight(
              acquired("unavailable"),
              Effect.sync(() => void (last.maybeSent && pendingReleases.add(id)))
            )
          })
        )
        const granted = yield* Clock.currentTimeMillis
        yield* Metric.update(tagged(metrics.waitSeconds), (granted - start) / 1_000)
        return { id, tenant }
      }).pipe(Effect.withSpan("ClusterBudget.permit", { attributes: { budget: name, tenant } }))

    const stats = Effect.sync(
      (): Stats => ({
        name,
        instanceId,
        limit,
        used: figures.used,
        held: held.size + offline.size,
        offline: offline.size,
        waiters,
        wantsElsewhere: figures.wantsElsewhere,
        over: figures.over,
        state,
        mode,
        instances,
        ...counters,
        pendingReleases: pendingReleases.size
      })
    )

    const service: Service = {
      name,
      instanceId,
      permit,
      lost: Stream.fromPubSub(lostHub),
      stats
    }
    // Listed in the admin API's registry when one is provided, for as long as this scope is open.
    yield* registerBudget(service)
    return service
  })
