/**
 * The benchmark's processes: the stand-in upstream, each relay and the load
 * generator run as Node child processes of their own (through tsx), so none
 * of them competes for another's event loop. A child is started in a
 * `Scope` (closing it stops the child: `SIGTERM`, then `SIGKILL` after a
 * bound), tells its parent it is ready over Node's IPC channel, and answers
 * calls on it (`call`). A child whose parent goes away stops by itself.
 */

import * as ChildProcess from "node:child_process"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Data, Duration, Effect, Runtime, type Scope } from "effect"

/** A child process failed to start, stopped, or did not answer in time. */
export class ChildError extends Data.TaggedError("ChildError")<{ readonly child: string; readonly message: string }> {}

type Message =
  | { readonly type: "ready"; readonly value: unknown }
  | {
      readonly type: "reply"
      readonly id: number
      readonly ok: boolean
      readonly value?: unknown
      readonly error?: string
    }
  | { readonly type: "call"; readonly id: number; readonly method: string; readonly payload: unknown }

/** A started child: what it said when ready, and calls to it. */
export interface Child<Ready> {
  readonly name: string
  readonly pid: number
  readonly ready: Ready
  readonly call: <A>(
    method: string,
    payload?: unknown,
    timeout?: Duration.DurationInput
  ) => Effect.Effect<A, ChildError>
}

const here = Path.dirname(fileURLToPath(import.meta.url))
/** The example's folder: children run there, so they resolve its dependencies. */
const root = Path.resolve(here, "..", "..")
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href

export interface SpawnOptions {
  /** Arguments after the entry file. */
  readonly args?: ReadonlyArray<string>
  /** Node options before the entry (e.g. `--cpu-prof`). */
  readonly node?: ReadonlyArray<string>
  /** How long the child may take to be ready (tsx compiles its sources first). Default 90 seconds. */
  readonly readyTimeout?: Duration.DurationInput
}

/**
 * Starts `entry` (a file of this folder) as a child process for the current
 * scope, and waits until it is ready.
 */
export const spawn = <Ready>(
  name: string,
  entry: string,
  options: SpawnOptions = {}
): Effect.Effect<Child<Ready>, ChildError, Scope.Scope> =>
  Effect.gen(function* () {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.fork(Path.join(here, entry), [...(options.args ?? [])], {
          cwd: root,
          execArgv: ["--import", tsxLoader, ...(options.node ?? [])],
          stdio: ["ignore", "inherit", "inherit", "ipc"]
        })
      ),
      stop
    )
    const pending = new Map<number, (reply: Extract<Message, { type: "reply" }>) => void>()
    let serial = 0
    let exited: string | undefined
    child.on("message", (message: Message) => {
      if (message.type !== "reply") return
      const resume = pending.get(message.id)
      pending.delete(message.id)
      resume?.(message)
    })
    child.once("exit", (code, signal) => {
      exited = `exited (${signal ?? code})`
      for (const [id, resume] of pending) resume({ type: "reply", id, ok: false, error: exited })
      pending.clear()
    })

    const ready = yield* Effect.async<Ready, ChildError>((resume) => {
      const onMessage = (message: Message) => {
        if (message.type !== "ready") return
        cleanup()
        resume(Effect.succeed(message.value as Ready))
      }
      const onExit = (code: number | null, signal: string | null) => {
        cleanup()
        resume(Effect.fail(new ChildError({ child: name, message: `exited before it was ready (${signal ?? code})` })))
      }
      const cleanup = () => {
        child.off("message", onMessage)
        child.off("exit", onExit)
      }
      child.on("message", onMessage)
      child.once("exit", onExit)
      return Effect.sync(cleanup)
    }).pipe(
      Effect.timeoutFail({
        duration: options.readyTimeout ?? Duration.seconds(90),
        onTimeout: () => new ChildError({ child: name, message: "not ready in time" })
      })
    )

    const call = <A>(method: string, payload?: unknown, timeout: Duration.DurationInput = Duration.seconds(30)) =>
      Effect.async<A, ChildError>((resume) => {
        if (exited !== undefined) return resume(Effect.fail(new ChildError({ child: name, message: exited })))
        const id = ++serial
        pending.set(id, (reply) =>
          resume(
            reply.ok
              ? Effect.succeed(reply.value as A)
              : Effect.fail(new ChildError({ child: name, message: `${method}: ${reply.error}` }))
          )
        )
        child.send({ type: "call", id, method, payload } satisfies Message)
        return Effect.sync(() => pending.delete(id))
      }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new ChildError({ child: name, message: `${method}: no answer in time` })
        })
      )

    return { name, pid: child.pid ?? 0, ready, call }
  })

/** `SIGTERM` (the child closes its own scope and writes its CPU profile), `SIGKILL` after 15 seconds. */
const stop = (child: ChildProcess.ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    child.kill("SIGTERM")
  })

/**
 * The child's side: answers its parent's calls with `handlers`, tells it
 * `ready`, and runs until it is stopped (`SIGTERM`, or its parent gone).
 */
export const serve = <R>(
  ready: unknown,
  handlers: Record<string, (payload: any) => Effect.Effect<unknown, unknown, R>>
): Effect.Effect<never, never, R> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<R>()
    const send = (message: Message) => process.send?.(message)
    const onMessage = (message: Message) => {
      if (message.type !== "call") return
      const handler = handlers[message.method]
      if (handler === undefined) {
        send({ type: "reply", id: message.id, ok: false, error: `no method ${message.method}` })
        return
      }
      Runtime.runPromise(runtime)(handler(message.payload)).then(
        (value) => send({ type: "reply", id: message.id, ok: true, value }),
        (error) => send({ type: "reply", id: message.id, ok: false, error: String(error) })
      )
    }
    // The parent went away without stopping us: stop the way it would have.
    const onDisconnect = () => process.kill(process.pid, "SIGTERM")
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("message", onMessage)
        process.once("disconnect", onDisconnect)
      }),
      () =>
        Effect.sync(() => {
          process.off("message", onMessage)
          process.off("disconnect", onDisconnect)
        })
    )
    send({ type: "ready", value: ready })
    return yield* Effect.never
  }).pipe(Effect.scoped)

/** CPU time (user + system) of this process so far, in microseconds. */
export const cpuMicros = () => {
  const used = process.cpuUsage()
  return used.user + used.system
}
