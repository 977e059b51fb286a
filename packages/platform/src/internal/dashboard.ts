import * as PoolRegistry from "@cistern/pool/PoolRegistry"
import type { GroupStats, KeyStats, PoolStats } from "@cistern/pool/PoolStats"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  type DashboardEvent,
  type DashboardHistory,
  type DashboardKey,
  type DashboardPoint,
  type DashboardPool,
  type DashboardSnapshot,
  type HealthStatus,
  type KeyPage,
  type KeyQuery,
  type KeySort,
  PoolNotFound
} from "../AdminApi.js"
import type { Options, Service } from "../AdminDashboard.js"
import { poolReasons } from "./health.js"

const annotations = { package: "@cistern/platform", module: "AdminDashboard" }

const waitHistogram = "cistern_pool_acquire_wait_seconds"
const destroyedCounter = "cistern_pool_destroyed_total"

/** Events each snapshot repeats (the page keeps its own list, by id); the history frame has all kept. */
const eventsPerSnapshot = 30

/** Key-level events one pool may add per sample; the rest are summed up in one. */
const eventsPerSample = 20

const healthRank: Record<DashboardKey["health"], number> = { open: 0, degraded: 1, healthy: 2 }
const breakerRank: Record<DashboardKey["breaker"], number> = { open: 0, "half-open": 1, closed: 2 }

const byKey = (a: DashboardKey, b: DashboardKey) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

const orders: Record<KeySort, (a: DashboardKey, b: DashboardKey) => number> = {
  attention: (a, b) =>
    breakerRank[a.breaker] - breakerRank[b.breaker] ||
    healthRank[a.health] - healthRank[b.health] ||
    b.waiting - a.waiting ||
    b.inUse - a.inUse ||
    b.failures - a.failures ||
    byKey(a, b),
  inUse: (a, b) => b.inUse - a.inUse || b.waiting - a.waiting || byKey(a, b),
  waiting: (a, b) => b.waiting - a.waiting || b.inUse - a.inUse || byKey(a, b),
  failures: (a, b) => b.failures - a.failures || b.timeouts - a.timeouts || byKey(a, b),
  timeouts: (a, b) => b.timeouts - a.timeouts || b.failures - a.failures || byKey(a, b),
  key: byKey
}

/** Busiest groups first: items leased or being created, then items, then by name. */
const byBusyGroup = (a: GroupStats, b: GroupStats) =>
  b.size - b.idle - (a.size - a.idle) || b.size - a.size || (a.group < b.group ? -1 : a.group > b.group ? 1 : 0)

const row = (k: KeyStats): DashboardKey => ({
  key: k.key,
  max: k.max,
  size: k.size,
  idle: k.idle,
  inUse: k.inUse,
  creating: k.creating,
  waiting: k.waiting,
  failures: k.failures,
  timeouts: k.timeouts,
  health: k.health.state,
  breaker: k.health.breaker,
  consecutiveFailures: k.health.consecutiveFailures,
  retryAt: k.health.retryAt
})

/** What the previous sample saw of a key, to tell what is new. */
interface KeyMemory {
  readonly failures: number
  readonly timeouts: number
  readonly transitionAt: number
  readonly checkAt: number
}

/** What the dashboard remembers of a pool between samples. */
interface PoolMemory {
  keys: Map<string, KeyMemory>
  timeouts: number
  failures: number
  waitCount: number
  waitBuckets: ReadonlyArray<number>
  evicted: number
  /** The charts' samples, oldest first, at most `history`. */
  readonly points: Array<DashboardPoint>
  /** The latest sample's keys, for searches and pages. */
  rows: ReadonlyArray<DashboardKey>
  at: number
}

const hasTag = (pair: MetricPair.MetricPair.Untyped, key: string, value: string) =>
  pair.metricKey.tags.some((tag) => tag.key === key && tag.value === value)

/** A pool's acquire-wait histogram, summed over its label sets: cumulative bucket counts and the total. */
const waitsOf = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, pool: string) => {
  let bounds: ReadonlyArray<number> = []
  let counts: Array<number> = []
  let count = 0
  for (const pair of pairs) {
    if (pair.metricKey.name !== waitHistogram || !hasTag(pair, "pool", pool)) continue
    const state: unknown = pair.metricState
    if (!MetricState.isHistogramState(state)) continue
    if (counts.length === 0) {
      bounds = state.buckets.map(([bound]) => bound)
      counts = state.buckets.map(() => 0)
    }
    state.buckets.forEach(([, n], i) => {
      counts[i] += n
    })
    count += state.count
  }
  return { bounds, counts, count }
}

const evictedOf = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, pool: string) => {
  let total = 0
  for (const pair of pairs) {
    if (pair.metricKey.name !== destroyedCounter || !hasTag(pair, "pool", pool) || !hasTag(pair, "reason", "evicted")) {
      continue
    }
    const state: unknown = pair.metricState
    if (MetricState.isCounterState(state)) total += Number(state.count)
  }
  return total
}

/** The upper bound (ms) of the bucket holding quantile `q` of the waits since the previous sample. */
const quantile = (bounds: ReadonlyArray<number>, delta: ReadonlyArray<number>, total: number, q: number) => {
  if (total <= 0) return null
  const target = q * total
  let finite = 0
  for (let i = 0; i < bounds.length; i++) {
    if (Number.isFinite(bounds[i])) finite = bounds[i]
    if (delta[i] >= target) return Math.round(finite * 1000 * 1000) / 1000
  }
  return Math.round(finite * 1000 * 1000) / 1000
}

const encoder = new TextEncoder()

const frame = (event: string, data: unknown): Uint8Array =>
  encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)

interface Viewer {
  readonly queue: Queue.Queue<Uint8Array>
  sent: number
  dropped: number
}

/** @internal */
export const make = (options?: Options): Effect.Effect<Service, never, PoolRegistry.PoolRegistry | Scope.Scope> =>
  Effect.gen(function* () {
    const registry = yield* PoolRegistry.PoolRegistry
    const interval = Duration.decode(options?.interval ?? "1 second")
    const intervalMillis = Duration.toMillis(interval)
    const idleInterval = Duration.max(interval, Duration.decode(options?.idleInterval ?? "10 seconds"))
    /** How long after the last poll the dashboard counts as watched. */
    const idleAfterMillis = 60_000
    const keysPerPool = Math.max(0, options?.keysPerPool ?? 50)
    const historyPoints = Math.max(1, options?.history ?? 300)
    const eventsKept = Math.max(0, options?.events ?? 100)

    const memory = new Map<string, PoolMemory>()
    const events: Array<DashboardEvent> = []
    let nextEventId = 1
    let latest: DashboardSnapshot = { at: 0, intervalMillis, pools: [], budgets: [], events: [] }
    let latestFrame: Uint8Array | undefined
    const viewers = new Set<Viewer>()

    const emit = (at: number, pool: string, kind: DashboardEvent["kind"], key: string | null, message: string) => {
      events.push({ id: nextEventId++, at, pool, kind, key, message })
      if (events.length > eventsKept) events.splice(0, events.length - eventsKept)
    }

    /** Key-level events since the previous sample; a key seen for the first time starts from zero. */
    const keyEvents = (at: number, stats: PoolStats, pool: PoolMemory, baseline: boolean) => {
      const keys = new Map<string, KeyMemory>()
      let emitted = 0
      let skipped = 0
      const add = (kind: DashboardEvent["kind"], key: string, message: string) => {
        if (baseline) return
        if (emitted < eventsPerSample) {
          emitted++
          emit(at, stats.name, kind, key, message)
        } else skipped++
      }
      for (const k of stats.perKey) {
        const before = pool.keys.get(k.key) ?? { failures: 0, timeouts: 0, transitionAt: -1, checkAt: -1 }
        let transitionAt = before.transitionAt
        for (const t of k.health.transitions) {
          if (t.at > before.transitionAt) {
            add("circuit", k.key, `circuit of ${k.key}: ${t.from} → ${t.to}`)
            if (t.at > transitionAt) transitionAt = t.at
          }
        }
        let checkAt = before.checkAt
        for (const check of k.health.history) {
          if (check.at > before.checkAt) {
            if (!check.ok) {
              add("check-failed", k.key, `${check.kind} of ${k.key} failed${check.error ? `: ${check.error}` : ""}`)
            }
            if (check.at > checkAt) checkAt = check.at
          }
        }
        if (k.failures > before.failures) {
          const n = k.failures - before.failures
          add("creation-failed", k.key, `${n} creation${n === 1 ? "" : "s"} of ${k.key} failed`)
        }
        if (k.timeouts > before.timeouts) {
          const n = k.timeouts - before.timeouts
          add("timeout", k.key, `${n} caller${n === 1 ? "" : "s"} gave up waiting for ${k.key}`)
        }
        keys.set(k.key, { failures: k.failures, timeouts: k.timeouts, transitionAt, checkAt })
      }
      if (skipped > 0) emit(at, stats.name, "timeout", null, `and ${skipped} more events on other keys`)
      pool.keys = keys
    }

    const samplePool = (
      at: number,
      stats: PoolStats,
      pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>
    ): DashboardPool => {
      let pool = memory.get(stats.name)
      const baseline = pool === undefined
      if (pool === undefined) {
        pool = {
          keys: new Map(),
          timeouts: stats.timeouts,
          failures: stats.failures,
          waitCount: 0,
          waitBuckets: [],
          evicted: evictedOf(pairs, stats.name),
          points: [],
          rows: [],
          at
        }
        memory.set(stats.name, pool)
        if (latestFrame !== undefined) emit(at, stats.name, "pool-added", null, `pool ${stats.name} registered`)
      }
      keyEvents(at, stats, pool, baseline)

      const waits = waitsOf(pairs, stats.name)
      const delta = waits.counts.map((n, i) => n - (pool.waitBuckets[i] ?? 0))
      const waited = baseline ? 0 : Math.max(0, waits.count - pool.waitCount)
      const evicted = evictedOf(pairs, stats.name)
      if (!baseline && evicted > pool.evicted) {
        const n = evicted - pool.evicted
        emit(
          at,
          stats.name,
          "eviction",
          null,
          `${n} idle item${n === 1 ? "" : "s"} evicted to make room for other keys`
        )
      }
      const timeouts = Math.max(0, stats.timeouts - pool.timeouts)
      const point: DashboardPoint = {
        at,
        idle: stats.idle,
        inUse: stats.inUse,
        creating: stats.creating,
        waiting: stats.waiting,
        waited,
        waitP50Millis: baseline ? null : quantile(waits.bounds, delta, waited, 0.5),
        waitP99Millis: baseline ? null : quantile(waits.bounds, delta, waited, 0.99),
        timeouts,
        failures: Math.max(0, stats.failures - pool.failures)
      }
      pool.points.push(point)
      if (pool.points.length > historyPoints) pool.points.splice(0, pool.points.length - historyPoints)
      pool.waitCount = waits.count
      pool.waitBuckets = waits.counts
      pool.evicted = evicted
      pool.timeouts = stats.timeouts
      pool.failures = stats.failures
      pool.at = at

      const rows = stats.perKey.map(row)
      rows.sort(orders.attention)
      pool.rows = rows
      let open = 0
      let halfOpen = 0
      for (const r of rows) {
        if (r.breaker === "open") open++
        else if (r.breaker === "half-open") halfOpen++
      }
      const reasons = poolReasons(stats, timeouts)
      const status: HealthStatus = reasons.some((r) => r.status === "unhealthy")
        ? "unhealthy"
        : reasons.length > 0
          ? "degraded"
          : "healthy"
      return {
        name: stats.name,
        closed: stats.closed,
        status,
        reasons: reasons.map((r) => r.message),
        totals: {
          keys: stats.keys,
          size: stats.size,
          idle: stats.idle,
          inUse: stats.inUse,
          creating: stats.creating,
          waiting: stats.waiting,
          created: stats.created,
          destroyed: stats.destroyed,
          timeouts: stats.timeouts,
          failures: stats.failures
        },
        circuits: { open, halfOpen },
        point,
        config: stats.config,
        keysTotal: rows.length,
        keys: rows.slice(0, keysPerPool),
        // Tenant groups, capped like the keys; absent in a pool without groups.
        ...(stats.perGroup === undefined
          ? {}
          : {
              groupsTotal: stats.perGroup.length,
              groups: stats.perGroup.slice().sort(byBusyGroup).slice(0, keysPerPool)
            })
      }
    }

    const sample = Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      const entries = yield* registry.list
      const stats = yield* Effect.forEach(entries, (entry) => entry.stats)
      const budgets = yield* Effect.flatMap(registry.budgets, (list) => Effect.all(list.map((b) => b.stats)))
      const pairs = yield* Metric.snapshot
      const pools = stats.map((s) => samplePool(at, s, pairs))
      for (const name of memory.keys()) {
        if (!stats.some((s) => s.name === name)) {
          memory.delete(name)
          emit(at, name, "pool-removed", null, `pool ${name} is gone (its scope closed)`)
        }
      }
      latest = { at, intervalMillis, pools, budgets, events: events.slice(-eventsPerSnapshot) }
      latestFrame = frame("snapshot", latest)
      const bytes = latestFrame
      yield* Effect.forEach(
        viewers,
        (viewer) =>
          Effect.flatMap(Queue.size(viewer.queue), (pending) => {
            if (pending > 0) viewer.dropped++
            return Queue.offer(viewer.queue, bytes)
          }),
        { discard: true }
      )
    })

    const history: Effect.Effect<DashboardHistory> = Effect.sync(() => ({
      pools: Array.from(memory, ([name, pool]) => ({ name, points: pool.points.slice() })),
      events: events.slice()
    }))

    // Open streams end when the dashboard closes: a server waits for its open connections before it stops.
    yield* Effect.addFinalizer(() => Effect.forEach(viewers, (viewer) => Queue.shutdown(viewer.queue)))

    // One sample at a time, whoever asks for it (the loop, a new viewer, a poll).
    const lock = yield* Effect.makeSemaphore(1)
    const safeSample = lock.withPermits(1)(
      sample.pipe(Effect.catchAllCause((cause) => Effect.logWarning("a dashboard sample failed", cause)))
    )
    /** Samples unless the latest is younger than `interval` (someone else just sampled). */
    const fresh = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      latestFrame !== undefined && now - latest.at < intervalMillis ? Effect.void : safeSample
    )

    // Nobody watching (no stream, no poll for a minute): sample every `idleInterval`, enough for the
    // charts' history, and wake up as soon as someone looks.
    let lastPolled = Number.NEGATIVE_INFINITY
    let idle = false
    const wake = yield* Queue.sliding<void>(1)
    const watched = (now: number) => viewers.size > 0 || now - lastPolled < idleAfterMillis
    const wakeUp = Effect.suspend(() => (idle ? Queue.offer(wake, undefined) : Effect.void))
    yield* Effect.gen(function* () {
      yield* safeSample
      for (;;) {
        idle = !watched(yield* Clock.currentTimeMillis)
        yield* Effect.raceFirst(Effect.sleep(idle ? idleInterval : interval), Queue.take(wake))
        idle = false
        yield* fresh
      }
    }).pipe(Effect.annotateLogs(annotations), Effect.forkScoped)

    const subscribe = Effect.acquireRelease(
      Effect.gen(function* () {
        // A sliding queue of one: a viewer that cannot keep up gets the latest snapshot, never a backlog.
        const queue = yield* Queue.sliding<Uint8Array>(1)
        const viewer: Viewer = { queue, sent: 0, dropped: 0 }
        if (latestFrame !== undefined) yield* Queue.offer(queue, latestFrame)
        viewers.add(viewer)
        yield* wakeUp
        return viewer
      }),
      (viewer) =>
        Effect.zipRight(
          Effect.sync(() => viewers.delete(viewer)),
          Queue.shutdown(viewer.queue)
        )
    )

    const stream: Stream.Stream<Uint8Array> = Stream.unwrapScoped(
      Effect.map(subscribe, (viewer) =>
        Stream.concat(
          Stream.fromEffect(Effect.map(history, (h) => frame("history", h))),
          Stream.fromQueue(viewer.queue)
        ).pipe(
          Stream.tap(() =>
            Effect.sync(() => {
              viewer.sent++
            })
          ),
          // Pull one frame at a time, so the queue (not a buffer in front of the socket) is what holds back.
          Stream.rechunk(1)
        )
      )
    )

    const keys = (query: KeyQuery): Effect.Effect<KeyPage, PoolNotFound> =>
      Effect.suspend(() => {
        const pool = memory.get(query.pool)
        if (pool === undefined) return Effect.fail(new PoolNotFound({ name: query.pool }))
        const search = query.search?.trim().toLowerCase() ?? ""
        let rows = search === "" ? pool.rows : pool.rows.filter((r) => r.key.toLowerCase().includes(search))
        const sort = query.sort ?? "attention"
        if (sort !== "attention") rows = rows.slice().sort(orders[sort])
        const offset = query.offset ?? 0
        const limit = query.limit ?? 50
        return Effect.succeed({
          pool: query.pool,
          at: pool.at,
          keysTotal: pool.rows.length,
          matched: rows.length,
          offset,
          rows: rows.slice(offset, offset + limit)
        })
      })

    return {
      latest: Effect.gen(function* () {
        lastPolled = yield* Clock.currentTimeMillis
        yield* fresh
        yield* wakeUp
        return latest
      }),
      history,
      events: stream,
      keys,
      viewers: Effect.suspend(() =>
        Effect.forEach(Array.from(viewers), (v) =>
          Effect.map(Queue.size(v.queue), (pending) => ({ sent: v.sent, dropped: v.dropped, pending }))
        )
      )
    }
  })
