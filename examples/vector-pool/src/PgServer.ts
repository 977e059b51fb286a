/**
 * A throwaway PostgreSQL cluster: a copy of a cluster `initdb` made once
 * (see `template`) in a temporary directory, then
 * `postgres` on 127.0.0.1 and a free port (its unix socket in that directory
 * too), living exactly as long as a scope. Closing the scope stops the server
 * and removes the directory.
 *
 * PostgreSQL refuses to run as root, so when this process is root the server
 * runs as the `postgres` user (the one Debian's `postgresql` package creates):
 * the children are spawned with that user's uid and gid directly (what
 * `runuser -u postgres --` would do, without a process in between). The
 * server runs under a watchdog shell, so it stops even if this process is
 * killed outright.
 *
 * Used by `pnpm example:vector` when `DATABASE_URL` is not set, and by the
 * tests, which also restart it.
 */
import * as childProcess from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Data, Deferred, Duration, Effect, FiberId, Ref, Schedule, type Scope } from "effect"
import pg from "pg"

/** The only address the server listens on. */
export const loopback = "127.0.0.1"

/** `initdb` or `postgres` could not be found, started, or did not accept connections in time. */
export class PgServerError extends Data.TaggedError("PgServerError")<{
  readonly reason: string
  readonly output: string
}> {
  override get message(): string {
    return this.output === "" ? `postgres: ${this.reason}` : `postgres: ${this.reason}\n${this.output}`
  }
}

/** A running cluster. */
export interface PgServer {
  readonly host: string
  readonly port: number
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication on loopback). */
  readonly url: string
  /** The server version, as `SHOW server_version` reports it. */
  readonly version: string
  /** Where the cluster's files and unix socket live; removed when the scope closes. */
  readonly directory: string
  /** Fast shutdown (open sessions are terminated), then waits until the process has exited. */
  readonly stop: Effect.Effect<void>
  /** Starts it again on the same port and data, once stopped; returns once it accepts connections. */
  readonly start: Effect.Effect<void, PgServerError>
  /** `stop`, then `start`. */
  readonly restart: Effect.Effect<void, PgServerError>
}

/** Where Debian installs the server binaries: the newest `/usr/lib/postgresql/<major>/bin`. */
export const binDirectory = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!fs.existsSync(root)) return undefined
  const majors = fs
    .readdirSync(root)
    .filter((name) => fs.existsSync(path.join(root, name, "bin", "postgres")))
    .sort((a, b) => Number(b) - Number(a))
  return majors.length === 0 ? undefined : path.join(root, majors[0], "bin")
}

/** Whether a cluster can be started here (checked synchronously, so a test file can decide to skip). */
export const isInstalled = (): boolean => binDirectory() !== undefined

/** The uid and gid to run as: `postgres` when this process is root, else this process's own. */
const runAs = (): { readonly uid: number; readonly gid: number } | undefined => {
  if (process.getuid?.() !== 0) return undefined
  const id = (flag: string) => {
    const result = childProcess.spawnSync("id", [flag, "postgres"], { encoding: "utf8" })
    return result.status === 0 ? Number(result.stdout.trim()) : Number.NaN
  }
  const uid = id("-u")
  const gid = id("-g")
  return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined
}

const freePort = Effect.async<number, PgServerError>((resume) => {
  const server = net.createServer()
  server.unref()
  server.once("error", (cause) => resume(Effect.fail(new PgServerError({ reason: cause.message, output: "" }))))
  server.listen(0, loopback, () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const outputLimit = 4_000

interface Child {
  readonly process: childProcess.ChildProcess
  readonly exited: Deferred.Deferred<string>
  readonly output: () => string
}

/**
 * Runs `postgres` under a small shell that exits with it, and watches its
 * stdin (handed to a background reader explicitly: sh gives background jobs
 * /dev/null otherwise), a pipe from this process: a line means "stop" (fast shutdown);
 * end-of-file means this process died without stopping it (SIGKILL, a
 * crash), and the shell stops the server and removes the cluster's directory
 * itself. So no server outlives the process that started it.
 */
const watchdog = `exec 3<&0
"$@" <&- & pid=$!
{
  if read -r _; then kill -INT "$pid" 2>/dev/null; exit; fi
  kill -INT "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -rf "$CLUSTER_DIRECTORY"
} <&3 &
exec 3<&-
wait "$pid"`

const spawn = (
  command: string,
  args: ReadonlyArray<string>,
  user: ReturnType<typeof runAs>,
  watched?: { readonly directory: string }
): Effect.Effect<Child, PgServerError> =>
  Effect.async<Child, PgServerError>((resume) => {
    let output = ""
    const exited = Deferred.unsafeMake<string>(FiberId.none)
    const [file, argv] =
      watched === undefined ? [command, args] : ["/bin/sh", ["-c", watchdog, "postgres-watchdog", command, ...args]]
    const child = childProcess.spawn(file, argv, {
      // A directory the server's user can enter, whatever this process's own is.
      cwd: os.tmpdir(),
      stdio: [watched === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      // initdb reads the locale; a fixed one makes the cluster the same everywhere
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        LANG: "C",
        LC_ALL: "C",
        ...(watched === undefined ? {} : { CLUSTER_DIRECTORY: watched.directory })
      },
      ...(user === undefined ? {} : { uid: user.uid, gid: user.gid })
    })
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-outputLimit)
    }
    child.stdout?.on("data", collect)
    child.stderr?.on("data", collect)
    child.once("exit", (code, signal) => Deferred.unsafeDone(exited, Effect.succeed(signal ?? `exit code ${code}`)))
    child.once("error", (cause) => {
      Deferred.unsafeDone(exited, Effect.succeed(cause.message))
      resume(Effect.fail(new PgServerError({ reason: `could not run ${command}: ${cause.message}`, output })))
    })
    child.once("spawn", () => resume(Effect.succeed({ process: child, exited, output: () => output })))
  })

/** The server's own pid, from its lock file (the first line of `postmaster.pid`). */
const serverPid = (data: string): number | undefined => {
  try {
    const pid = Number(fs.readFileSync(path.join(data, "postmaster.pid"), "utf8").split("\n")[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * Asks the watchdog for a fast shutdown (open sessions are terminated) and
 * waits for it; if the server lingers, SIGQUIT (immediate shutdown) to the
 * server itself, then SIGKILL.
 */
const kill = (child: Child, data: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    // Also after an early exit: the watchdog's reader waits for this line.
    if (child.process.stdin?.writable) child.process.stdin.end("stop\n")
    if (child.process.exitCode !== null || child.process.signalCode !== null) return Effect.void
    // Interruptible, or the timeout could not fire inside a finalizer.
    return Effect.interruptible(Deferred.await(child.exited)).pipe(
      Effect.timeout("10 seconds"),
      Effect.catchAll(() => {
        const pid = serverPid(data)
        try {
          if (pid !== undefined) process.kill(pid, "SIGQUIT")
        } catch {
          // already gone
        }
        return Effect.interruptible(Deferred.await(child.exited)).pipe(
          Effect.timeout("5 seconds"),
          Effect.catchAll(() => Effect.sync(() => child.process.kill("SIGKILL")))
        )
      }),
      Effect.asVoid
    )
  })

/** `initdb`'s arguments after `-D`: the same for every cluster, so one template serves them all. */
const initdbArgs = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]

/**
 * A freshly initialized cluster to copy. `initdb` takes seconds on a busy
 * machine and a copy a fraction of one, so it runs once per machine (per
 * server version and user) into `<tmp>/cistern-pgtemplate-<major>-<uid>`, kept
 * for the next clusters. It is built aside and renamed into place, so a
 * half-built template is never used; when two processes build at once, the
 * first rename wins and the other's copy is discarded.
 */
const template = (bin: string, user: ReturnType<typeof runAs>): Effect.Effect<string, PgServerError> =>
  Effect.gen(function* () {
    const uid = user?.uid ?? process.getuid?.() ?? "user"
    const target = path.join(os.tmpdir(), `cistern-pgtemplate-${path.basename(path.dirname(bin))}-${uid}`)
    if (fs.existsSync(path.join(target, "PG_VERSION"))) return target
    const build = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cistern-pgtemplate-build-"))
        if (user !== undefined) fs.chownSync(dir, user.uid, user.gid)
        return dir
      }),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    const data = path.join(build, "data")
    const initdb = yield* spawn(path.join(bin, "initdb"), ["-D", data, ...initdbArgs], user)
    const how = yield* Deferred.await(initdb.exited)
    if (how !== "exit code 0") {
      return yield* new PgServerError({ reason: `initdb failed (${how})`, output: initdb.output() })
    }
    yield* Effect.sync(() => {
      try {
        fs.renameSync(data, target)
      } catch {
        // Another process put its template in place first: use that one.
      }
    })
    if (!fs.existsSync(path.join(target, "PG_VERSION"))) {
      return yield* new PgServerError({ reason: `could not keep a cluster template at ${target}`, output: "" })
    }
    return target
  }).pipe(Effect.scoped)

/** Connects once and asks the version; fails when the server does not accept connections (yet). */
const serverVersion = (port: number): Effect.Effect<string, PgServerError> =>
  Effect.acquireUseRelease(
    Effect.sync(
      () => new pg.Client({ host: loopback, port, user: "postgres", database: "postgres", application_name: "probe" })
    ),
    (client) =>
      Effect.tryPromise({
        try: async () => {
          await client.connect()
          const result = await client.query<{ server_version: string }>("SHOW server_version")
          return result.rows[0].server_version
        },
        catch: (cause) => new PgServerError({ reason: `not accepting connections: ${String(cause)}`, output: "" })
      }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

/**
 * Makes a cluster in a temporary directory and starts it on 127.0.0.1 and a
 * free port; returns once it accepts connections. Closing the scope stops it
 * and removes the directory.
 */
export const make = (options?: {
  /** How long to wait for the server to accept connections. Default 30 seconds. */
  readonly readyWithin?: Duration.DurationInput | undefined
}): Effect.Effect<PgServer, PgServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const bin = binDirectory()
    if (bin === undefined) {
      return yield* new PgServerError({
        reason: "no server under /usr/lib/postgresql/*/bin (install Debian's postgresql: bash .ci/install-servers.sh)",
        output: ""
      })
    }
    const readyWithin = Duration.decode(options?.readyWithin ?? "30 seconds")
    const user = runAs()
    const directory = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cistern-pg-"))
        if (user !== undefined) fs.chownSync(dir, user.uid, user.gid)
        return dir
      }),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    const data = path.join(directory, "data")

    // A copy of the template (as the server's user, so the files are its own), not an `initdb` of its own.
    const copy = yield* spawn("cp", ["-a", yield* template(bin, user), data], user)
    const copied = yield* Deferred.await(copy.exited)
    if (copied !== "exit code 0") {
      return yield* new PgServerError({
        reason: `copying the cluster template failed (${copied})`,
        output: copy.output()
      })
    }

    const port = yield* freePort
    const current = yield* Ref.make<Child | undefined>(undefined)

    const stop = Effect.flatMap(Ref.getAndSet(current, undefined), (child) =>
      child === undefined ? Effect.void : kill(child, data)
    )

    const start = Effect.gen(function* () {
      if ((yield* Ref.get(current)) !== undefined) return
      const child = yield* spawn(
        path.join(bin, "postgres"),
        [
          "-D",
          data,
          "-p",
          String(port),
          "-h",
          loopback,
          "-k",
          directory,
          // a throwaway cluster: durability traded for speed
          "-c",
          "fsync=off",
          "-c",
          "synchronous_commit=off",
          "-c",
          "full_page_writes=off",
          "-c",
          "max_connections=200",
          "-c",
          "shared_buffers=16MB"
        ],
        user,
        { directory }
      )
      yield* Ref.set(current, child)
      const exitedEarly = Effect.flatMap(Effect.interruptible(Deferred.await(child.exited)), (how) =>
        Effect.fail(
          new PgServerError({ reason: `exited before accepting connections (${how})`, output: child.output() })
        )
      )
      yield* serverVersion(port).pipe(
        Effect.retry(Schedule.spaced("50 millis")),
        Effect.interruptible,
        Effect.timeoutFail({
          duration: readyWithin,
          onTimeout: () =>
            new PgServerError({
              reason: `did not accept connections within ${Duration.format(readyWithin)}`,
              output: child.output()
            })
        }),
        Effect.raceFirst(exitedEarly),
        Effect.tapErrorCause(() => stop)
      )
    })

    // Stopped before the directory is removed (finalizers run in reverse order).
    yield* Effect.addFinalizer(() => stop)
    yield* start
    const version = yield* Effect.orElseSucceed(serverVersion(port), () => "unknown")
    return {
      host: loopback,
      port,
      url: `postgres://postgres@${loopback}:${port}/postgres`,
      version,
      directory,
      stop,
      start,
      restart: Effect.zipRight(stop, start)
    }
  })
