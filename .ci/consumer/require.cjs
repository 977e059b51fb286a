// Run by the consumer check with plain node where require() loads ES modules
// (Node >= 20.19, >= 22.12): a CommonJS program uses the ESM-only packages.
const { Context, Effect } = require("effect")
const { KeyedPool } = require("@cistern/pool")

class Upstreams extends Context.Tag("app/Upstreams")() {}
let acquired = 0
let released = 0
const live = KeyedPool.layer(Upstreams, {
  acquire: (key) =>
    Effect.acquireRelease(
      Effect.sync(() => `${key}#${++acquired}`),
      () => Effect.sync(() => void released++)
    ),
  maxPerKey: 2
})
const program = Effect.gen(function* () {
  const pool = yield* Upstreams
  return yield* pool.use("ada", (conn) => Effect.succeed(conn))
})
Effect.runPromise(Effect.provide(program, live)).then((conn) => {
  console.log(`require(): leased ${conn}; acquired ${acquired}, released ${released}`)
  if (acquired !== 1 || released !== 1) process.exit(1)
})
