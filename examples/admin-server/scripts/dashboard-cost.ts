/**
 * What the dashboard costs the server: a real admin server with a real pool of
 * 10,000 keys, measured first with no viewer, then with 50 event streams read
 * by another process (so the readers' own work is not counted).
 *
 *   npx tsx examples/admin-server/scripts/dashboard-cost.ts
 *
 * Prints the snapshot's size, the CPU per second with nobody watching (one
 * sample every 10 seconds) and while watched (one a second), and CPU and
 * memory per connected viewer.
 */
import { spawn } from "node:child_process"
import { createServer } from "node:http"
import { AdminAuth, AdminHttp } from "@cistern/platform"
import { KeyedPool, PoolRegistry } from "@cistern/pool"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Effect, Layer, Logger, LogLevel, Redacted } from "effect"

const keys = 10_000
const viewers = 50
const seconds = 15
const secret = "dashboard-cost-token"

const measure = (label: string) =>
  Effect.promise(async () => {
    if (global.gc) global.gc()
    const cpu = process.cpuUsage()
    const start = process.hrtime.bigint()
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    if (global.gc) global.gc()
    const used = process.cpuUsage(cpu)
    const wall = Number(process.hrtime.bigint() - start) / 1e9
    const memory = process.memoryUsage()
    const result = {
      label,
      cpuMillisPerSecond: (used.user + used.system) / 1000 / wall,
      heapMB: memory.heapUsed / 2 ** 20,
      rssMB: memory.rss / 2 ** 20
    }
    console.log(JSON.stringify(result))
    return result
  })

/** 50 event streams in a child process that count bytes and throw them away. */
const readers = (port: number) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      spawn(
        process.execPath,
        [
          "-e",
          `
const net = require("node:net")
let bytes = 0
for (let i = 0; i < ${viewers}; i++) {
  const s = net.connect(${port}, "127.0.0.1", () =>
    s.write("GET /dashboard/events HTTP/1.1\\r\\nhost: x\\r\\nauthorization: Bearer ${secret}\\r\\n\\r\\n"))
  s.on("data", (d) => { bytes += d.length })
}
setInterval(() => console.log(bytes), 1000)
`
        ],
        { stdio: ["ignore", "pipe", "inherit"] }
      )
    ),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )

const program = Effect.gen(function* () {
  const registry = yield* PoolRegistry.make
  const pool = yield* KeyedPool.make({
    name: "tenants",
    acquire: (key: string) => Effect.succeed({ key }),
    describeKey: (key) => key,
    maxKeys: keys * 2,
    maxTotal: keys * 2
  }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
  yield* Effect.forEach(
    Array.from({ length: keys }, (_, i) => `tenant-${String(i).padStart(5, "0")}:upstream`),
    (key) => pool.use(key, () => Effect.void),
    { concurrency: 100, discard: true }
  )
  const context = yield* Layer.build(
    AdminHttp.layerServer().pipe(
      Layer.provide(AdminAuth.layer({ token: Redacted.make(secret) })),
      Layer.provide(Layer.succeed(PoolRegistry.PoolRegistry, registry)),
      Layer.provideMerge(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: 0 }))
    )
  )
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
  // nobody has looked yet: the sampler runs every 10 seconds
  const unwatched = yield* measure("nobody watching")
  const response = yield* Effect.promise(() =>
    fetch(`http://127.0.0.1:${address.port}/dashboard/snapshot`, { headers: { authorization: `Bearer ${secret}` } })
  )
  const snapshot = yield* Effect.promise(() => response.text())
  console.log(JSON.stringify({ keys, snapshotBytes: Buffer.byteLength(snapshot) }))

  // the part of each sample that is the pool's own stats (10,000 KeyStats)
  const statsStart = process.hrtime.bigint()
  for (let i = 0; i < 20; i++) yield* pool.stats
  console.log(JSON.stringify({ poolStatsMillis: Number(process.hrtime.bigint() - statsStart) / 1e6 / 20 }))

  // a poll a minute ago or less: the sampler runs every second
  const idle = yield* measure("no stream, sampled every second")
  const child = yield* readers(address.port)
  let received = 0
  child.stdout?.on("data", (chunk) => {
    received = Number(String(chunk).trim().split("\n").pop())
  })
  yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2000)))
  const before = received
  const watched = yield* measure(`${viewers} viewers`)
  const perViewer = {
    viewers,
    bytesPerViewerPerSecond: (received - before) / viewers / seconds,
    cpuMillisPerSecondPerViewer: (watched.cpuMillisPerSecond - idle.cpuMillisPerSecond) / viewers,
    heapKBPerViewer: ((watched.heapMB - idle.heapMB) * 1024) / viewers,
    rssKBPerViewer: ((watched.rssMB - idle.rssMB) * 1024) / viewers
  }
  console.log(JSON.stringify(perViewer))
  console.log(
    JSON.stringify({
      samplerCpuMillisPerSecondWatched: idle.cpuMillisPerSecond - unwatched.cpuMillisPerSecond,
      note: "nobody watching = the pool's own background work + one sample every 10 s"
    })
  )
})

program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)), Effect.runPromise)
