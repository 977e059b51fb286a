import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, type Scope } from "effect"
import { client, eventually, quiet, service, testSettings } from "./utils.js"

// 500 pairs (add a memory, then search for it) = 1,000 calls through one
// pooled MCP connection shared by 8 callers at a time, over real sockets, while the service resets
// connections, hangs requests and restarts. Every call must succeed, every
// memory must be stored exactly once, and every search must find its memory.

const pairs = 500

describe("1,000 calls through resets, hangs and a restart", () => {
  it.scopedLive(
    "lose no call and duplicate none (the service's counts prove it)",
    () =>
      Effect.gen(function* () {
        const svc = yield* service
        const host = svc.host
        const c = yield* client(
          svc,
          testSettings({ requestTimeout: Duration.seconds(1), retryDelay: Duration.millis(25), maxRetries: 8 })
        )
        yield* c.connect

        // Faults fire when the pair with that index starts.
        const faults: Record<number, Effect.Effect<unknown, never, Scope.Scope>> = {
          // the add is stored, then its answer is lost: the retry must not store it again
          40: host.injectFault({ kind: "reset", when: "after", method: "tools/call add_memory", count: 3 }),
          // the service never sees the call
          90: host.injectFault({ kind: "reset", when: "before", count: 2 }),
          130: host.injectFault({ kind: "reset", when: "before", method: "tools/call search_memories" }),
          // stored, never answered: the client times out, rebuilds and retries
          180: host.injectFault({ kind: "hang", when: "after", method: "tools/call add_memory" }),
          // never answered, never handled
          220: host.injectFault({ kind: "hang", when: "before", method: "tools/call search_memories" }),
          // every open socket reset at once, in the middle of the stream
          270: host.resetConnections,
          // the service goes away for 300 ms and forgets every session
          330: Effect.forkScoped(host.restart("300 millis")),
          420: host.injectFault({ kind: "reset", when: "after", method: "tools/call add_memory", count: 2 })
        }

        // The most callers seen holding the one connection at once (the pool's count, read between calls).
        let mostLeases = 0
        const started = Date.now()
        const cpu = process.cpuUsage()
        const results = yield* Effect.forEach(
          Array.from({ length: pairs }, (_, i) => i),
          (i) =>
            Effect.gen(function* () {
              const fault = faults[i]
              if (fault !== undefined) yield* fault
              const added = yield* c.addMemory(`note ${i}: remember token-${i}`)
              mostLeases = Math.max(mostLeases, (yield* c.stats).leases ?? 0)
              const found = yield* c.searchMemories(`token-${i}`)
              return { i, added, found }
            }),
          { concurrency: 8 }
        )
        const elapsed = Date.now() - started
        const used = process.cpuUsage(cpu)

        // No call lost: all 1,000 succeeded, and every search found the memory its pair added.
        assert.strictEqual(results.length, pairs)
        for (const { added, found, i } of results) {
          assert.deepStrictEqual(
            found.results.map((hit) => hit.id),
            [added.id],
            `search ${i} finds exactly its memory`
          )
        }

        // None duplicated: 500 memories, one per add, each text once.
        const counts = yield* svc.counts
        const stored = svc.store.all()
        assert.strictEqual(counts.addApplied, pairs)
        assert.strictEqual(new Set(stored.map((m) => m.text)).size, pairs)
        assert.strictEqual(new Set(results.map((r) => r.added.id)).size, pairs)
        // Every delivery of an idempotency key beyond the first was absorbed, not stored.
        const deliveries = [...svc.store.deliveries().values()]
        assert.strictEqual(deliveries.length, pairs)
        const redelivered = deliveries.reduce((n, d) => n + d - 1, 0)
        assert.strictEqual(counts.addDuplicates, redelivered)
        assert.strictEqual(counts.addReceived, pairs + redelivered)
        // The faults that lose an answer after the add was stored (3 + 1 + 2) were all retried.
        assert.isAtLeast(redelivered, 6)
        assert.isAtLeast(counts.searches, pairs)

        // The faults happened, and the client rebuilt its connection through them.
        assert.isAtLeast(counts.resets, 9)
        assert.strictEqual(counts.hangs, 2)
        assert.strictEqual(counts.restarts, 1)
        const status = yield* c.status
        assert.isTrue(status.healthy)
        // The connection was replaced through the faults. Not one rebuild per fault site: a site's later faults
        // can land on the calls sharing the broken connection or on its replacement's own handshake (a failed
        // creation, retried, not a rebuild). Seen: 6 on a quiet machine every run, up to 9 under load.
        assert.isAtLeast(status.rebuilds, 4)
        assert.strictEqual(status.connections, status.rebuilds + 1)
        // a connection fails after its session opened when a fault hits its key validation
        assert.isAtLeast(counts.sessionsOpened, status.connections)
        // A replaced connection ends its session from a finalizer on a fiber of its own: wait (bounded) for it.
        const settled = yield* eventually(svc.counts, (n) => n.sessionsOpen <= 1, "replaced sessions ended")
        assert.isAtMost(settled.sessionsOpen, 1, "replaced connections ended their sessions")
        assert.isAbove(mostLeases, 1, "the callers shared the connection: several calls held it at once")

        const summary = {
          calls: pairs * 2,
          elapsedMillis: elapsed,
          // client and service share this process: its CPU time is the cost of both, whatever the machine's load
          cpuMillis: Math.round((used.user + used.system) / 1000),
          stored: counts.addApplied,
          addReceived: counts.addReceived,
          duplicatesAbsorbed: counts.addDuplicates,
          searches: counts.searches,
          resets: counts.resets,
          hangs: counts.hangs,
          restarts: counts.restarts,
          rebuilds: status.rebuilds,
          sessionsOpened: counts.sessionsOpened,
          mostLeases,
          sessionNotFound: counts.sessionNotFound
        }
        process.stdout.write(`memory-client chaos run: ${JSON.stringify(summary)}\n`)
      }).pipe(Effect.provide(quiet)),
    60_000
  )
})
