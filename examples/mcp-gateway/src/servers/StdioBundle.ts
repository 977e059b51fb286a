/**
 * The bundled stdio MCP server, compiled once into one JavaScript file that
 * plain `node` runs. A stdio MCP server is a new process per connection, so
 * its start-up is the price of every new connection: one bundled file starts
 * several times faster than TypeScript compiled on the fly.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Data, Effect, type Scope } from "effect"
import { build } from "esbuild"

/** The stdio server could not be compiled. */
export class BundleFailed extends Data.TaggedError("BundleFailed")<{ readonly detail: string }> {
  override get message() {
    return `could not compile the stdio MCP server: ${this.detail}`
  }
}

const entry = fileURLToPath(new URL("./stdio-server.ts", import.meta.url))

/** Compiles the stdio server into `outfile`. */
export const buildTo = (outfile: string): Effect.Effect<string, BundleFailed> =>
  Effect.tryPromise({
    try: () =>
      build({
        entryPoints: [entry],
        outfile,
        bundle: true,
        platform: "node",
        format: "esm",
        target: "node20",
        logLevel: "silent",
        // CommonJS dependencies inside an ES module still call `require` for Node's built-ins
        banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' }
      }),
    catch: (error) => new BundleFailed({ detail: error instanceof Error ? error.message : String(error) })
  }).pipe(Effect.as(outfile))

/** Compiles the stdio server into a temporary folder, removed with the scope; answers the file's path. */
export const make: Effect.Effect<string, BundleFailed, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "mcp-gateway-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
).pipe(Effect.flatMap((dir) => buildTo(join(dir, "stdio-server.mjs"))))
