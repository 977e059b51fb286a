import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Connection from "../src/Connection.js"
import * as PgServer from "../src/PgServer.js"
import { eventually, runs } from "./utils/Postgres.js"

/** Makes a cluster in a child process that then waits forever, and prints where it is. */
const holder = `
import { Effect } from "effect"
import * as PgServer from "./src/PgServer.ts"
Effect.runFork(Effect.scoped(Effect.flatMap(PgServer.make(), (s) => Effect.zipRight(Effect.sync(() => console.log("cluster " + s.port + " " + s.directory)), Effect.never))))
`

describe.skipIf(!runs)("PgServer", () => {
  it.scopedLive(
    "a cluster lives as long as its scope: up, restarted on the same port, stopped and removed on close",
    () =>
      Effect.gen(function* () {
        const { directory, server } = yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* PgServer.make()
            assert.match(server.version, /^\d+/)
            const ask = Effect.scoped(
              Effect.flatMap(Connection.connect({ url: server.url }), (c) => Connection.serverVersion(c))
            )
            assert.strictEqual(yield* ask, server.version)
            yield* server.restart
            assert.strictEqual(yield* ask, server.version, "the same port and data after a restart")
            return { directory: server.directory, server }
          })
        )
        assert.isFalse(fs.existsSync(directory), "its directory is removed")
        const refused = yield* Effect.flip(Effect.scoped(Connection.connect({ url: server.url })))
        assert.strictEqual(refused._tag, "ConnectionError")
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "clusters are independent copies of one template: what one stores, another made after it does not see",
    () =>
      Effect.gen(function* () {
        const sql = (url: string, text: string) =>
          Effect.scoped(Effect.flatMap(Connection.connect({ url }), (c) => Connection.query(c, text)))
        const first = yield* PgServer.make()
        yield* sql(first.url, "CREATE TABLE only_in_first (id int)")
        const second = yield* PgServer.make()
        assert.notStrictEqual(second.directory, first.directory)
        const tables = yield* sql(second.url, "SELECT 1 FROM pg_tables WHERE tablename = 'only_in_first'")
        assert.strictEqual(tables.length, 0, "the second cluster is a fresh copy")
        assert.strictEqual((yield* sql(first.url, "SELECT count(*) FROM only_in_first")).length, 1)
      }),
    { timeout: 60_000 }
  )

  it.scopedLive(
    "a cluster does not outlive the process that started it, even when that process is SIGKILLed",
    () =>
      Effect.gen(function* () {
        const child = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", holder], {
              cwd: fileURLToPath(new URL("..", import.meta.url)),
              stdio: ["ignore", "pipe", "inherit"]
            })
            let output = ""
            child.stdout?.on("data", (chunk) => (output += chunk))
            return { child, output: () => output }
          }),
          ({ child }) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
        )
        const line = yield* eventually(
          Effect.sync(() => /cluster (\d+) (\S+)/.exec(child.output())),
          (m) => m !== null,
          "90 seconds"
        )
        const [, port, directory] = line!
        assert.isTrue(fs.existsSync(directory))
        child.child.kill("SIGKILL")
        const url = `postgres://postgres@127.0.0.1:${port}/postgres`
        const gone = Effect.scoped(Connection.connect({ url })).pipe(
          Effect.as(false),
          Effect.catchAll(() => Effect.succeed(!fs.existsSync(directory)))
        )
        assert.isTrue(yield* eventually(gone, (ok) => ok, "20 seconds"), "server stopped and directory removed")
      }),
    { timeout: 150_000 }
  )
})
