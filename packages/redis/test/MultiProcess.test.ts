/**
 * Two separate Node processes (two instances of a service) sharing one real
 * Redis: each sees the other's sessions, indexes and affinity pins, and
 * 1,000 concurrent `update`s of one session split across both lose none.
 */
import * as childProcess from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { redisAvailable } from "./utils/backends.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

const here = path.dirname(fileURLToPath(import.meta.url))
const script = path.join(here, "fixtures", "instance.ts")

/** Runs one instance to completion (killed if it outlives `withinMs`) and parses its JSON line. */
const instance = (args: ReadonlyArray<string>, withinMs = 60_000) =>
  Effect.async<unknown, Error>((resume) => {
    const child = childProcess.spawn(process.execPath, ["--import", "tsx", script, ...args], {
      cwd: path.join(here, ".."),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let err = ""
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8")
    })
    child.stderr.on("data", (chunk: Buffer) => {
      err = (err + chunk.toString("utf8")).slice(-4_000)
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), withinMs)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resume(Effect.try(() => JSON.parse(out.trim().split("\n").pop()!)))
      else resume(Effect.fail(new Error(`instance ${args[2]} ended with ${signal ?? code}: ${err}`)))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      child.kill("SIGKILL")
    })
  })

const available = redisAvailable()

describe.skipIf(!available.run)("two processes sharing one Redis", () => {
  it.scopedLive(
    "see each other's sessions, indexes and affinity; 1,000 concurrent updates across both end at exactly 1,000",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const prefix = "mp:"
        const [a, b] = yield* Effect.all(
          [instance([server.url, prefix, "a", "500"]), instance([server.url, prefix, "b", "500"])],
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(a, { key: "acct-a" })
        assert.deepStrictEqual(b, { user: "u1", byUser: ["s1"], byKey: ["s1"], key: "acct-a", reason: "kept" })
        const raw = yield* rawClient(server.url)
        const stored = JSON.parse((yield* Effect.promise(() => raw.get(`${prefix}sessions:s:s1`)))!)
        assert.strictEqual(stored.v.counter, 1_000)
      }),
    90_000
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
