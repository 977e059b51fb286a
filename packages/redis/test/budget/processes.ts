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
  /** Live connections now, in total, per tenant and per instance. */
  readonly live: () => {
    readonly total: number
    readonly tenants: Readonly<Record<string, number>>
    readonly instances: Readonly<Record<string, number>>
  }
  /** Connections opened so far, in total or by one instance. */
  readonly opened: (instance?: string) => number
  /**
   * Calls `f` with the live counts right after each connection opens (so no peak is missed between
   * samples), until the returned function is called.
   */
  readonly onOpen: (f: (live: ReturnType<Echo["live"]>) => void) => () => void
}

/**
 * A server that counts a connection from its first line (`<tenant>` or
 * `<tenant> <instance>`) until its `bye` or its close.
 */
export const echoServer: Effect.Effect<Echo, never, Scope.Scope> = Effect.acquireRelease(
  Effect.async<{ server: net.Server; echo: Echo }>((resume) => {
    let total = 0
    const tenants: Record<string, number> = {}
    const instances: Record<string, number> = {}
    const opened: Record<string, number> = {}
    let openedTotal = 0
    const listeners = new Set<(live: ReturnType<Echo["live"]>) => void>()
    const live = () => ({ total, tenants: { ...tenants }, instances: { ...instances } })
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      let who: { tenant: string; instance: string } | undefined
      let buffer = ""
      const done = () => {
        if (who === undefined) return
        total--
        tenants[who.tenant] = (tenants[who.tenant] ?? 1) - 1
        instances[who.instance] = (instances[who.instance] ?? 1) - 1
        who = undefined
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
          } else if (who === undefined) {
            const [tenant = "", instance = ""] = line.split(" ")
            who = { tenant, instance }
            total++
            openedTotal++
            opened[instance] = (opened[instance] ?? 0) + 1
            tenants[tenant] = (tenants[tenant] ?? 0) + 1
            instances[instance] = (instances[instance] ?? 0) + 1
            socket.write("ok\n")
            for (const f of listeners) f(live())
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
          echo: {
            port,
            live,
            opened: (instance) => (instance === undefined ? openedTotal : (opened[instance] ?? 0)),
            onOpen: (f) => {
              listeners.add(f)
              return () => listeners.delete(f)
            }
          }
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

/** A round's settings (see `holder.ts`). */
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
  readonly mode?: "hold" | "churn" | "idle"
  readonly waitForGo?: boolean
  readonly heartbeatMillis?: number
  readonly commandTimeoutMillis?: number
  readonly reconnectMillis?: number
  readonly fair?: boolean
}

/** What a holder last reported in its current round. */
export interface HolderReport {
  readonly held: number
  /** Connections it has open (its own count; the echo server's is the ground truth). */
  readonly open: number
  readonly reclaimed: number
  readonly leasesLost: number
  readonly state: string
  /** Idle connections it closed for fairness. */
  readonly evicted: number
}

export interface Holder {
  readonly pid: number
  /** What it last reported in its current round. */
  readonly report: () => HolderReport
  /** The lease-lost events it printed in its current round. */
  readonly lost: () => ReadonlyArray<{ readonly permits: number; readonly detectedBy: string }>
  /** Every budget state (`ok`, `learning`, `unavailable`) it reported in its current round. */
  readonly states: () => ReadonlySet<string>
  readonly signal: (signal: NodeJS.Signals) => void
  readonly output: () => string
  /** Lets a holder started with `waitForGo` join the budget. */
  readonly go: () => void
  /** Completes once the process has booted (within `withinMs`). */
  readonly ready: (withinMs: number) => Effect.Effect<void, Error>
  /** Starts a round with these settings (a process started without settings waits for one). */
  readonly join: (settings: HolderSettings) => void
  /** Ends the current round (its connections closed, the budget left), within `withinMs`. */
  readonly leave: (withinMs: number) => Effect.Effect<void, Error>
}

const emptyReport: HolderReport = { held: 0, open: 0, reclaimed: 0, leasesLost: 0, state: "ok", evicted: 0 }

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

/** Polls `check` every 10 ms of real time until it holds, or fails with `what` after `withinMs`. */
const waitFor = (check: () => boolean, what: () => string, withinMs: number): Effect.Effect<void, Error> =>
  Effect.async<void, Error>((resume) => {
    const deadline = performance.now() + withinMs
    const timer = setInterval(() => {
      if (check()) {
        clearInterval(timer)
        resume(Effect.void)
      } else if (performance.now() > deadline) {
        clearInterval(timer)
        resume(Effect.fail(new Error(`not within ${withinMs} ms: ${what()}`)))
      }
    }, 10)
    return Effect.sync(() => clearInterval(timer))
  })

/**
 * Starts a holder process, with a round's settings or waiting for `join`;
 * closing the scope kills it (SIGKILL, after SIGCONT) and waits for its exit.
 */
export const holder = (
  command: ReadonlyArray<string>,
  settings?: HolderSettings
): Effect.Effect<Holder, never, Scope.Scope> =>
  Effect.gen(function* () {
    // Lines of other rounds (a late report of the last one) are ignored.
    let round = settings === undefined ? 0 : 1
    let report = emptyReport
    let lost: Array<{ readonly permits: number; readonly detectedBy: string }> = []
    let states = new Set<string>()
    let booted = false
    let left = 0
    let err = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        childProcess.spawn(
          process.execPath,
          [...command, ...(settings === undefined ? [] : [JSON.stringify(settings)])],
          { cwd: path.join(here, "..", ".."), stdio: ["pipe", "pipe", "pipe"] }
        )
      ),
      (child) =>
        Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
          child.kill("SIGCONT")
          child.kill("SIGKILL")
        })
    )
    child.stdin.on("error", () => {})
    let buffer = ""
    child.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8")
      let nl = buffer.indexOf("\n")
      while (nl >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        nl = buffer.indexOf("\n")
        let parsed: Record<string, unknown>
        try {
          parsed = JSON.parse(line)
        } catch {
          err = (err + line).slice(-4_000)
          continue
        }
        if (parsed.ready !== undefined) booted = true
        else if (parsed.left !== undefined) left = Number(parsed.left)
        else if (parsed.round !== round) continue
        else if (parsed.lost !== undefined) lost.push(parsed.lost as (typeof lost)[number])
        else if (parsed.held !== undefined) {
          report = parsed as unknown as HolderReport
          states.add(report.state)
        }
      }
    })
    child.stderr.on("data", (chunk: Buffer) => {
      err = (err + chunk.toString("utf8")).slice(-4_000)
    })
    const send = (line: string) => {
      child.stdin.write(`${line}\n`)
    }
    return {
      pid: child.pid ?? -1,
      report: () => report,
      lost: () => lost,
      states: () => states,
      signal: (signal) => {
        child.kill(signal)
      },
      output: () => err,
      go: () => send("go"),
      ready: (withinMs) =>
        waitFor(
          () => booted,
          () => `holder ${child.pid} booted; its output: ${err}`,
          withinMs
        ),
      join: (next) => {
        round++
        report = emptyReport
        lost = []
        states = new Set()
        send(JSON.stringify({ join: next }))
      },
      leave: (withinMs) => {
        const ending = round
        send(JSON.stringify({ leave: true }))
        return waitFor(
          () => left >= ending,
          () => `holder ${child.pid} left round ${ending}; its output: ${err}`,
          withinMs
        )
      }
    }
  })

/** Samples `f` every 10 ms of real time while the scope lives. */
export const sampleEvery10ms = (f: () => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => setInterval(f, 10)),
    (timer) => Effect.sync(() => clearInterval(timer))
  ).pipe(Effect.asVoid)
