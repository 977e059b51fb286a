/**
 * What the multi-process budget tests run: an echo server on 127.0.0.1 that
 * counts live connections in total and per tenant (the ground truth), and
 * holder processes (`holder.ts`), each stopped with its scope.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

const here = path.dirname(fileURLToPath(import.meta.url))

export interface Echo {
  readonly port: number
  /** Live connections now, in total and per tenant. */
  readonly live: () => { readonly total: number; readonly tenants: Readonly<Record<string, number>> }
  /** Connections opened so far. */
  readonly opened: () => number
}

/** A server that counts a connection from its first line (the tenant) until its `bye` or its close. */
export const echoServer: Effect.Effect<Echo, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ server: net.Server; echo: Echo }>((resume) => {
    let total = 0
    let opened = 0
    const tenants: Record<string, number> = {}
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      let tenant: string | undefined
      let buffer = ""
      const done = () => {
        if (tenant === undefined) return
        total--
        tenants[tenant] = (tenants[tenant] ?? 1) - 1
        tenant = undefined
      }
      socket.on("data", (chunk) => {
        buffer += chunk.toString("utf8")
        let nl = buffer.indexOf("\n")
        while (nl >= 0) {
          const line = buffer.slice(0, nl)
          buffer = buffer.slice(nl + 1)
          if (line === "bye") {
            done()
            socket.end()
          } else if (tenant === undefined) {
            tenant = line
            total++
            opened++
            tenants[tenant] = (tenants[tenant] ?? 0) + 1
            socket.write("ok\n")
          }
          nl = buffer.indexOf("\n")
        }
      })
      socket.on("error", () => {})
      socket.on("close", () => {
        done()
        sockets.delete(socket)
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      resume(
        Effect.succeed({
          server,
          echo: { port, live: () => ({ total, tenants: { ...tenants } }), opened: () => opened }
        })
      )
    })
    ;(server as net.Server & { sockets?: Set<net.Socket> }).sockets = sockets
  }),
  ({ server }) =>
    Effect.async<void>((resume) => {
      for (const s of (server as net.Server & { sockets: Set<net.Socket> }).sockets) s.destroy()
      server.close(() => resume(Effect.void))
    })
).pipe(Effect.map(({ echo }) => echo))

export interface HolderSettings {
  readonly url: string
  readonly name: string
  readonly instanceId: string
  readonly total: number
  readonly perTenant: number
  readonly leaseMillis: number
  readonly echoPort: number
  readonly tenants: ReadonlyArray<string>
  readonly wants: number
  readonly churn: boolean
  readonly waitForGo?: boolean
}

export interface Holder {
  readonly pid: number
  /** What it last reported. */
  readonly report: () => { readonly held: number; readonly reclaimed: number; readonly leasesLost: number }
  /** The lease-lost events it printed. */
  readonly lost: () => ReadonlyArray<unknown>
  readonly signal: (signal: NodeJS.Signals) => void
  readonly output: () => string
  /** Lets a holder started with `waitForGo` join the budget. */
  readonly go: () => void
}

/**
 * The holder as one ES module (our TypeScript sources bundled; effect and
 * ioredis imported from the package's dependencies), written next to the
 * package's build output and removed with the scope: a process then boots
 * in a fraction of the time `--import tsx` takes to compile the sources
 * again in each process. esbuild is reached through tsx, which ships it; if
 * that fails, processes run through tsx.
 */
export const holderCommand: Effect.Effect<ReadonlyArray<string>, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(async () => {
    const entry = path.join(here, "holder.ts")
    try {
      const require = createRequire(import.meta.url)
      const esbuild = createRequire(require.resolve("tsx"))("esbuild") as {
        build: (options: Record<string, unknown>) => Promise<unknown>
      }
      const outfile = path.join(here, "..", "..", "build", `budget-holder-${process.pid}.mjs`)
      await esbuild.build({
        entryPoints: [entry],
        bundle: true,
        platform: "node",
        format: "esm",
        outfile,
        external: ["effect", "effect/*", "ioredis"],
        logLevel: "error"
      })
      return { args: [outfile], outfile }
    } catch (error) {
      process.stderr.write(`budget holder: bundling failed, running through tsx: ${String(error)}\n`)
      return { args: ["--import", "tsx", entry], outfile: undefined }
    }
  }),
  ({ outfile }) => Effect.sync(() => outfile !== undefined && fs.rmSync(outfile, { force: true }))
).pipe(Effect.map(({ args }) => args))

/** Starts a holder process; closing the scope kills it (SIGKILL, after SIGCONT) and waits for its exit. */
export const holder = (
  command: ReadonlyArray<string>,
  settings: HolderSettings
): Effect.Effect<Holder, never, Scope.Scope> =>
  Effect.gen(function* () {
    let report = { held: 0, reclaimed: 0, leasesLost: 0 }
    const lost: Array<unknown> = []
    let err = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        childProcess.spawn(process.execPath, [...command, JSON.stringify(settings)], {
          cwd: path.join(here, "..", ".."),
          stdio: ["pipe", "pipe", "pipe"]
        })
      ),
      (child) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGCONT")
          child.kill("SIGKILL")
        })
    )
    let buffer = ""
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8")
      let nl = buffer.indexOf("\n")
      while (nl >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        try {
          const parsed = JSON.parse(line)
          if (parsed.lost !== undefined) lost.push(parsed.lost)
          else report = parsed
        } catch {
          err = (err + line).slice(-4_000)
        }
        nl = buffer.indexOf("\n")
      }
    })
    child.stderr.on("data", (chunk: Buffer) => {
      err = (err + chunk.toString("utf8")).slice(-4_000)
    })
    return {
      pid: child.pid ?? -1,
      report: () => report,
      lost: () => lost,
      signal: (signal) => {
        child.kill(signal)
      },
      output: () => err,
      go: () => {
        child.stdin.write("go\n")
      }
    }
  })

/** Samples `f` every 10 ms of real time while the scope lives. */
export const sampleEvery10ms = (f: () => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => setInterval(f, 10)),
    (timer) => Effect.sync(() => clearInterval(timer))
  ).pipe(Effect.asVoid)
