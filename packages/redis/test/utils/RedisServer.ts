/**
 * A real `redis-server` on 127.0.0.1 and a free port, living as long as a
 * scope (the approach of the workspace's `test/utils/RedisServer.ts`), with
 * the signals the outage tests send: SIGKILL, SIGSTOP and SIGCONT, and a
 * restart on the same port.
 */
import * as childProcess from "node:child_process"
import * as net from "node:net"
import * as os from "node:os"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type * as Scope from "effect/Scope"

export const binary = "redis-server"
export const loopback = "127.0.0.1"

export class RedisServerError extends Data.TaggedError("RedisServerError")<{
  readonly reason: string
  readonly output: string
}> {
  override get message(): string {
    return `redis-server: ${this.reason}\n${this.output}`
  }
}

/** Whether `redis-server` runs from PATH (synchronous, for deciding at load time). */
export const isInstalled = (): boolean => {
  const result = childProcess.spawnSync(binary, ["--version"], { stdio: "ignore", timeout: 5_000 })
  return result.error === undefined && result.status === 0
}

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly pid: number
  /** Sends a signal to the process (SIGKILL, SIGSTOP, SIGCONT). */
  readonly signal: (signal: NodeJS.Signals) => void
  /** Completes when the process has exited. */
  readonly exited: Effect.Effect<string>
}

/** A port on 127.0.0.1 that was free a moment ago. */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.unref()
  server.listen(0, loopback, () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/**
 * Resolves once a raw connection gets `+PONG` for `PING` (polling every 20 ms
 * with Node timers, so it works the same under `TestClock`), or with `false`
 * after `withinMs`.
 */
export const waitForPing = (port: number, withinMs = 10_000): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const deadline = performance.now() + withinMs
    let socket: net.Socket | undefined
    let timer: NodeJS.Timeout | undefined
    let settled = false
    const finish = (ok: boolean) => {
      if (settled) return
      settled = true
      socket?.destroy()
      if (timer !== undefined) clearTimeout(timer)
      resume(Effect.succeed(ok))
    }
    const attempt = () => {
      if (performance.now() > deadline) return finish(false)
      const s = net.connect({ port, host: loopback })
      socket = s
      const retry = () => {
        s.destroy()
        if (!settled) timer = setTimeout(attempt, 20)
      }
      s.setTimeout(500, retry)
      s.once("connect", () => s.write("PING\r\n"))
      s.once("data", (data) => (data.toString("utf8").startsWith("+PONG") ? finish(true) : retry()))
      s.once("error", retry)
    }
    attempt()
    return Effect.sync(() => {
      settled = true
      socket?.destroy()
      if (timer !== undefined) clearTimeout(timer)
    })
  })

/**
 * Starts `redis-server` (no persistence) on `port` (default: a free one) and
 * returns once it answers `PING`; closing the scope kills it (SIGCONT first,
 * in case a test left it stopped) and waits for the exit.
 */
export const make = (options?: { readonly port?: number }): Effect.Effect<RedisServer, RedisServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const port = options?.port ?? (yield* freePort)
    let output = ""
    const exited = Deferred.unsafeMake<string>(FiberId.none)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = childProcess.spawn(
          binary,
          [
            "--port",
            String(port),
            "--bind",
            loopback,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            os.tmpdir(),
            "--loglevel",
            "warning"
          ],
          { stdio: ["ignore", "pipe", "pipe"] }
        )
        const collect = (chunk: Buffer) => {
          output = (output + chunk.toString("utf8")).slice(-4_000)
        }
        child.stdout?.on("data", collect)
        child.stderr?.on("data", collect)
        child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed(signal ?? `exit ${code}`)))
        child.once("error", (e) => Deferred.unsafeDone(exited, Effect.succeed(e.message)))
        return child
      }),
      (child) =>
        Effect.suspend(() => {
          if (child.exitCode !== null || child.signalCode !== null) return Effect.void
          child.kill("SIGCONT")
          child.kill("SIGKILL")
          return Effect.asVoid(Deferred.await(exited))
        })
    )
    yield* waitForPing(port).pipe(
      Effect.flatMap((ok) =>
        ok ? Effect.void : Effect.fail(new RedisServerError({ reason: "did not answer PING in 10 seconds", output }))
      ),
      Effect.raceFirst(
        Effect.flatMap(Deferred.await(exited), (how) =>
          Effect.fail(new RedisServerError({ reason: `exited before answering PING (${how})`, output }))
        )
      )
    )
    return {
      port,
      url: `redis://${loopback}:${port}`,
      pid: child.pid ?? -1,
      signal: (signal) => {
        child.kill(signal)
      },
      exited: Deferred.await(exited)
    }
  })
