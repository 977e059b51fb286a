/**
 * The cluster budget of one instance: its lease (a heartbeat on a
 * `Schedule`, a local deadline), its waiters (FIFO per tenant, woken by a
 * local release, a `freed` notification over pub/sub, or a jittered retry),
 * and the permits it holds.
 *
 * @internal
 */
import * as os from "node:os"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
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
  type Options,
  type Permit,
  type Service,
  type Stats
} from "../ClusterBudget.js"
import { RedisClient } from "../RedisClient.js"
import type { RedisError } from "../RedisError.js"
import * as BudgetClient from "./budgetClient.js"
import * as metrics from "./budgetMetrics.js"
import type { Caller, Op, Reply } from "./budgetModel.js"

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
    const held = new Map<string, string>()
    const pendingReleases = new Set<string>()
    const queues = new Map<string, Array<Waiter>>()
    let waiters = 0
    let wake = Deferred.unsafeMake<void>(FiberId.none)
    const counters = { granted: 0, released: 0, exhausted: 0, unavailable: 0, reclaimed: 0, leasesLost: 0 }

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
        state = reply.status === "learning" ? "learning" : "ok"
        // A holder adopts a new epoch only from a heartbeat, which re-asserts what it holds.
        if (op._tag === "heartbeat" || held.size === 0 || reply.status === "lost") epoch = reply.epoch
        yield* sampleGauges
        return reply
      }).pipe(Effect.tapError(() => Effect.sync(() => void (state = "unavailable"))))

    const tagged = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>) => Metric.tagged(metric, "budget", name)
    const sampleGauges = Effect.suspend(() =>
      Effect.all(
        [
          Metric.set(tagged(metrics.limit), limit),
          Metric.set(tagged(metrics.used), figures.used),
          Metric.set(tagged(metrics.held), held.size),
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
        held.clear()
        counters.leasesLost++
        yield* Metric.increment(tagged(metrics.leasesLost))
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
          figures = { ...figures, over: reply.over }
        }
        // Renewal first: releases left from an outage are replayed after it, and one that fails again
        // stays pending for the next beat without costing the lease.
        yield* Effect.ignore(replayReleases)
      })
    )

    const checkDeadline = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (held.size > 0 && now >= lastRenewal + leaseMillis - margin) yield* loseLease("deadline")
    })

    /** A local release frees capacity: the waiters of this instance try again at once. */
    const release = (id: string) =>
      Effect.gen(function* () {
        const wasHeld = held.delete(id)
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

    /** The head of its tenant's queue asks until it gets a permit. */
    const attempt = (id: string, tenant: string, last: { reply: Reply | undefined }) =>
      Effect.gen(function* () {
        const tenantLimit = tenantLimitOf(tenant)
        let delay = retryMin
        while (true) {
          const signal = wake
          const reply = yield* call({
            _tag: "acquire",
            id,
            tenant,
            limit,
            tenantLimit,
            held: held.size,
            waiting: waiters
          }).pipe(
            Effect.mapError((e) => new BudgetUnavailable({ budget: name, tenant, reason: e.reason, detail: e.detail }))
          )
          last.reply = reply
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
          const jitter = yield* Random.nextRange(0.5, 1)
          yield* Deferred.await(signal).pipe(Effect.timeout(Duration.millis(delay * jitter)), Effect.ignore)
          delay = Math.min(retryMax, delay * 2)
        }
      })

    const permit = (tenant = "*"): Effect.Effect<Permit, BudgetExhausted | BudgetUnavailable, Scope.Scope> =>
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
        const last: { reply: Reply | undefined } = { reply: undefined }
        const exhausted = Effect.gen(function* () {
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
          (waiter) => Effect.zipRight(Deferred.await(waiter.turn), attempt(id, tenant, last)),
          (waiter) => leave(tenant, waiter)
        ).pipe(
          Effect.timeout(acquireTimeout),
          Effect.catchTag("TimeoutException", () => Effect.flatMap(exhausted, Effect.fail)),
          Effect.tapError((e) => {
            if (e._tag === "BudgetExhausted") return giveBack
            // Redis is not answering: the release waits for it (replayed by the heartbeat) instead of failing late.
            counters.unavailable++
            released = true
            return Effect.zipRight(
              acquired("unavailable"),
              Effect.sync(() => void pendingReleases.add(id))
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
        held: held.size,
        waiters,
        wantsElsewhere: figures.wantsElsewhere,
        over: figures.over,
        state,
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
    return service
  })
