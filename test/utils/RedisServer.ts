/**
 * A real `redis-server` child process on 127.0.0.1 and a free port, without
 * persistence, living exactly as long as a scope. `.ci/install-servers.sh`
 * installs the binary.
 *
 * @since 0.1.0
 */
import * as childProcess from "node:child_process"
import * as os from "node:os"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as LineClient from "./LineClient.js"
import { freePort, loopback } from "./Ports.js"

/**
 * The binary the tests run.
 *
 * @since 0.1.0
 * @category constants
 */
export const binary = "redis-server"

/**
 * `redis-server` could not be started, exited before it answered, or did not
 * answer `PING` in time. `output` is the tail of what it printed.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisServerError extends Data.TaggedError("RedisServerError")<{
  readonly reason: string
  readonly output: string
}> {
  override get message(): string {
    return this.output === "" ? `redis-server: ${this.reason}` : `redis-server: ${this.reason}\n${this.output}`
  }
}

/**
 * A running server.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisServer {
  readonly host: string
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** The child process id. */
  readonly pid: number
}

/**
 * Whether `redis-server` can be run from `PATH` (checked synchronously, so a
 * test file can decide at load time whether to skip).
 *
 * @since 0.1.0
 * @category getters
 */
export const isInstalled = (): boolean => {
  const result = childProcess.spawnSync(binary, ["--version"], { stdio: "ignore", timeout: 5_000 })
  return result.error === undefined && result.status === 0
}

const outputLimit = 4_000

interface Child {
  readonly process: childProcess.ChildProcess
  readonly exited: Deferred.Deferred<string>
  readonly output: () => string
}

const spawn = (port: number) =>
  Effect.async<Child, RedisServerError>((resume) => {
    let output = ""
    const exited = Deferred.unsafeMake<string>(FiberId.none)
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
        "--daemonize",
        "no",
        "--loglevel",
        "warning"
      ],
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-outputLimit)
    }
    child.stdout?.on("data", collect)
    child.stderr?.on("data", collect)
    child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed(signal ?? `exit code ${code}`)))
    child.once("error", (cause) => {
      Deferred.unsafeDone(exited, Effect.succeed(cause.message))
      resume(Effect.fail(new RedisServerError({ reason: `could not start: ${cause.message}`, output })))
    })
    child.once("spawn", () => resume(Effect.succeed({ process: child, exited, output: () => output })))
  })

/** SIGTERM (redis shuts down without saving), then SIGKILL if it lingers. */
const kill = (child: Child): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return Effect.void
    child.process.kill("SIGTERM")
    // Interruptible, or the timeout could not fire inside a finalizer.
    return Effect.interruptible(Deferred.await(child.exited)).pipe(
      Effect.timeout("5 seconds"),
      Effect.catchAll(() => {
        child.process.kill("SIGKILL")
        return Deferred.await(child.exited)
      }),
      Effect.asVoid
    )
  })

/** Whether a raw connection gets `+PONG` back for `PING`. */
const answersPing = (port: number): Effect.Effect<boolean> =>
  Effect.scoped(Effect.flatMap(LineClient.connect({ port }), (client) => client.request("PING"))).pipe(
    Effect.map((reply) => reply === "+PONG"),
    Effect.orElseSucceed(() => false)
  )

const startOn = (port: number, readyWithin: Duration.Duration) =>
  Effect.gen(function* () {
    const child = yield* Effect.acquireRelease(spawn(port), kill)
    const exitedEarly = Effect.flatMap(Effect.interruptible(Deferred.await(child.exited)), (how) =>
      Effect.fail(new RedisServerError({ reason: `exited before answering PING (${how})`, output: child.output() }))
    )
    yield* answersPing(port).pipe(
      Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced("20 millis") }),
      // Interruptible, so the deadline holds even when started from an uninterruptible region.
      Effect.interruptible,
      Effect.timeoutFail({
        duration: readyWithin,
        onTimeout: () =>
          new RedisServerError({
            reason: `did not answer PING within ${Duration.format(readyWithin)}`,
            output: child.output()
          })
      }),
      Effect.raceFirst(exitedEarly),
      // A failed attempt goes at once, not when the scope closes.
      Effect.tapErrorCause(() => kill(child))
    )
    return child
  })

/**
 * Starts `redis-server` on 127.0.0.1 and a free port (`--save "" --appendonly
 * no`), and returns once it answers `PING`. Closing the scope stops it and
 * waits for the process to exit. A port taken between choosing and binding is
 * retried on another one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options?: {
  /** How long to wait for the first `PONG`. Default 10 seconds. */
  readonly readyWithin?: Duration.DurationInput | undefined
}): Effect.Effect<RedisServer, RedisServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const readyWithin = Duration.decode(options?.readyWithin ?? "10 seconds")
    const start = freePort.pipe(
      Effect.mapError((cause) => new RedisServerError({ reason: cause.message, output: "" })),
      Effect.flatMap((port) => Effect.map(startOn(port, readyWithin), (child) => ({ port, child })))
    )
    const { child, port } = yield* Effect.retry(start, {
      times: 3,
      while: (error) => error.output.includes("Address already in use")
    })
    return {
      host: loopback,
      port,
      url: `redis://${loopback}:${port}`,
      pid: child.process.pid ?? -1
    }
  })
