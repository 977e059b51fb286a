// Run by the consumer check with plain node, in a scratch project that installed
// the packed tarballs with npm. No TypeScript, no loader, no bundler.
import * as fs from "node:fs"
import { KeyedPool, Pool } from "@cistern/pool"
import { Effect } from "effect"

// Every public entry point of every packed package loads, and internals stay closed.
const entrypoints = JSON.parse(fs.readFileSync(new URL("./entrypoints.json", import.meta.url), "utf8"))
for (const spec of entrypoints) {
  const module = await import(spec)
  if (Object.keys(module).length === 0) throw new Error(`${spec} exports nothing`)
}
console.log(`${entrypoints.length} entry points load`)
const internal = await import("@cistern/pool/internal/keyedPool.js").then(
  () => "open",
  (e) => e.code
)
if (internal !== "ERR_PACKAGE_PATH_NOT_EXPORTED")
  throw new Error(`@cistern/pool/internal/* is not closed (${internal})`)

// Counting resources: every acquire must be matched by exactly one release.
let acquired = 0
let released = 0
const resource = (label) =>
  Effect.acquireRelease(
    Effect.sync(() => ({ label, id: ++acquired })),
    () => Effect.sync(() => void released++)
  )

const program = Effect.gen(function* () {
  const keyed = yield* KeyedPool.make({ acquire: (tenant) => resource(tenant), maxPerKey: 2, maxTotal: 3 })
  const pool = yield* Pool.make({ acquire: resource("single"), max: 2 })

  // Two leases of one key and one of another, held together in a scope.
  yield* Effect.scoped(
    Effect.gen(function* () {
      const a1 = yield* keyed.get("ada")
      const a2 = yield* keyed.get("ada")
      const b1 = yield* KeyedPool.get(keyed, "bob")
      if (a1.id === a2.id || a1.label !== "ada" || b1.label !== "bob") throw new Error("leases are not distinct")
      const during = yield* keyed.stats
      if (during.inUse !== 3) throw new Error(`expected 3 leases in use, saw ${during.inUse}`)
    })
  )
  // A returned item is reused, not re-created.
  const reused = yield* keyed.use("ada", (conn) => Effect.succeed(conn.label))
  const [p1, p2] = yield* Effect.scoped(Effect.all([pool.get, pool.get]))
  const p3 = yield* pool.use((conn) => Effect.succeed(conn))
  if (p1.id === p2.id || (p3.id !== p1.id && p3.id !== p2.id)) throw new Error("Pool leases are off")

  const keyedStats = yield* keyed.stats
  const poolStats = yield* pool.stats
  console.log(
    `KeyedPool: ${reused} reused; keys ${keyedStats.keys}, size ${keyedStats.size}, idle ${keyedStats.idle}, in use ${keyedStats.inUse}, created ${keyedStats.created}`
  )
  console.log(
    `Pool: size ${poolStats.size}, idle ${poolStats.idle}, in use ${poolStats.inUse}, created ${poolStats.created}`
  )
  if (keyedStats.created !== 3 || keyedStats.inUse !== 0) throw new Error("KeyedPool stats are off")
  if (poolStats.created !== 2 || poolStats.inUse !== 0) throw new Error("Pool stats are off")
})

await Effect.runPromise(Effect.scoped(program))
console.log(`acquired ${acquired}, released ${released}`)
if (acquired !== 5 || released !== acquired) {
  console.error("not every finalizer ran")
  process.exit(1)
}
