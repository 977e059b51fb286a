/**
 * `pnpm bench:heap`: where the keyed scenario's heap per live key goes.
 *
 * Runs the keyed scenario's workload (10,000 keys × at most 2 items, 200,000
 * leases on random keys by 100 callers) against Cistern's `KeyedPool`, takes a
 * V8 heap snapshot of the fresh pool and one after the run, and prints the
 * difference by kind of object — count and bytes per live key — so a change
 * to the engine's per-key state shows up as a line here. It runs the same
 * workload with three `acquire`s, to split what the engine spends from what
 * the item's own `Scope` and finalizer cost:
 *
 * - `acquireRelease`: the benchmark's resource, `Effect.acquireRelease`
 *   (what the keyed scenario measures);
 * - `addFinalizer`: the same item, its finalizer added with
 *   `Scope.addFinalizer` (which keeps no snapshot of the fiber's `FiberRefs`);
 * - `plain`: the item with no finalizer at all (the engine's own share).
 *
 *   pnpm bench:heap                 10,000 keys (the keyed scenario's size)
 *   pnpm bench:heap -- --keys 2000  smaller and faster
 */
import { writeHeapSnapshot } from "node:v8"
import { KeyedPool } from "@cistern/pool"
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import { buildScoped } from "./adapters/scoped.js"
import * as format from "./format.js"
import { random, settledHeap } from "./measure.js"
import { type Item, Ledger } from "./resource.js"
import { ids, readSnapshot, tally } from "./snapshot.js"
import type { EffectSubject } from "./subject.js"
import { runPlan } from "./workload.js"

const args = process.argv.slice(2)
const keysAt = args.indexOf("--keys")
const keys = keysAt < 0 ? 10_000 : Number(args[keysAt + 1])
const callers = 100
const ops = (keys * 20) / callers
const top = 24

type Acquire = (ledger: Ledger) => (key: number) => Effect.Effect<Item, never, Scope.Scope>

const acquires: ReadonlyArray<readonly [string, Acquire]> = [
  [
    "acquireRelease",
    (ledger) => (key) =>
      Effect.acquireRelease(
        Effect.sync(() => ledger.create(key)),
        () => Effect.sync(() => ledger.destroy())
      )
  ],
  [
    "addFinalizer",
    (ledger) => (key) =>
      Effect.flatMap(Scope.Scope, (scope) => {
        const item = ledger.create(key)
        return Effect.as(
          Scope.addFinalizer(
            scope,
            Effect.sync(() => ledger.destroy())
          ),
          item
        )
      })
  ],
  ["plain", (ledger) => (key) => Effect.sync(() => ledger.create(key))]
]

const plan = () => {
  const next = random(5)
  const sequence = new Uint32Array(callers * ops)
  for (let i = 0; i < sequence.length; i++) sequence[i] = Math.floor(next() * keys)
  return { callers, opsPerCaller: ops, keys: sequence, work: "noop", recordWaits: false } as const
}

/** Writes a heap snapshot after full collections; only its path stays on the heap until both are taken. */
const snapshot = (): string => {
  settledHeap()
  return writeHeapSnapshot()
}

const measure = async (name: string, acquire: Acquire): Promise<void> => {
  const ledger = new Ledger()
  const { value: pool, close } = await buildScoped(
    KeyedPool.make({
      acquire: acquire(ledger),
      maxPerKey: 2,
      maxTotal: Number.POSITIVE_INFINITY,
      maxKeys: Number.POSITIVE_INFINITY
    })
  )
  const subject: EffectSubject = {
    style: "effect",
    lease: (key, body) => pool.use(key, body),
    keys: () => Effect.runSync(pool.stats).keys,
    close
  }
  const work = plan()
  // Warm every code path first (on a key outside the measured range), so the diff holds no compiled code or caches.
  const warmKeys = new Uint32Array(1000).fill(keys)
  await runPlan(subject, { callers: 10, opsPerCaller: 100, keys: warmKeys, work: "noop", recordWaits: false })
  const heapBefore = settledHeap()
  const beforePath = snapshot()
  await runPlan(subject, work)
  const heapAfter = settledHeap()
  const afterPath = snapshot()
  const live = (subject.keys() ?? 1) - 1
  const items = ledger.alive - 1
  await close()
  const beforeSnapshot = readSnapshot(beforePath, true)
  const before = tally(beforeSnapshot)
  // What holds the objects the run allocated: those whose ids the first snapshot did not have.
  const afterSnapshot = readSnapshot(afterPath, true)
  const added = tally(afterSnapshot, ids(beforeSnapshot))
  const after = tally(afterSnapshot)
  const heldBy = (kind: string): string => {
    const t = added.get(kind)
    if (t === undefined) return ""
    return Array.from(t.held)
      .sort((x, y) => y[1] - x[1])
      .slice(0, 2)
      .map(([by, bytes]) => `${by} (${Math.round((100 * bytes) / t.bytes)} %)`)
      .join("; ")
  }
  const rows: Array<{ name: string; count: number; bytes: number }> = []
  for (const [kind, t] of after) {
    const b = before.get(kind)
    rows.push({ name: kind, count: t.count - (b?.count ?? 0), bytes: t.bytes - (b?.bytes ?? 0) })
  }
  for (const [kind, b] of before) if (!after.has(kind)) rows.push({ name: kind, count: -b.count, bytes: -b.bytes })
  rows.sort((x, y) => y.bytes - x.bytes)
  const total = rows.reduce((sum, r) => sum + r.bytes, 0)
  const shown = rows.slice(0, top)
  const rest = total - shown.reduce((sum, r) => sum + r.bytes, 0)
  console.log(
    `\n### acquire: ${name} — ${format.integer(live)} live keys, ${format.integer(items)} live items ` +
      `(${(items / live).toFixed(2)} a key)\n`
  )
  console.log(
    `heap used: ${format.bytes((heapAfter - heapBefore) / live)} a key; ` +
      `heap snapshots, after − before: ${format.bytes(total / live)} a key\n`
  )
  console.log(
    "| kind of object (V8 type / constructor) | objects a key | bytes a key | new ones held by (share of bytes) |"
  )
  console.log("|---|---:|---:|---|")
  for (const r of shown) {
    const held = heldBy(r.name).replaceAll("|", "\\|")
    console.log(`| ${r.name} | ${(r.count / live).toFixed(2)} | ${Math.round(r.bytes / live)} | ${held} |`)
  }
  console.log(`| everything else | | ${Math.round(rest / live)} | |`)
}

for (const [name, acquire] of acquires) await measure(name, acquire)
