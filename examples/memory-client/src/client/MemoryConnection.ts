/**
 * One connection to the memory service: an MCP SDK `Client` over Streamable
 * HTTP, on an HTTP agent of its own (so rebuilding the connection really
 * opens new sockets), with the API key validated before it is handed out.
 *
 * `connect` is what the pool runs to create (and re-create) the item: it
 * opens the MCP session, then calls `whoami` so a key the service no longer
 * accepts is found at once, as a typed {@link InvalidApiKey}. Closing its
 * scope ends the session (`DELETE`, best effort) and closes the sockets.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js"
import { Duration, Effect, Redacted, Schema, type Scope } from "effect"
import { Agent, type Dispatcher, request } from "undici"
import { fromUnknown, type MemoryError, MemoryProtocolError, MemoryUnavailable } from "./MemoryError.js"

/** What `add_memory` answers. */
export const AddResult = Schema.Struct({ id: Schema.String, duplicate: Schema.Boolean })

/** What `add_memory` answers: the memory's id, and whether this key was stored before. */
export interface AddResult extends Schema.Schema.Type<typeof AddResult> {}

/** What `search_memories` answers. */
export const SearchResult = Schema.Struct({
  results: Schema.Array(Schema.Struct({ id: Schema.String, text: Schema.String, score: Schema.Number }))
})

/** What `search_memories` answers: hits, best first. */
export interface SearchResult extends Schema.Schema.Type<typeof SearchResult> {}

const WhoAmI = Schema.Struct({ account: Schema.String })

/** What `add_memory` takes. The idempotency key makes a retried add safe. */
export interface AddInput {
  readonly text: string
  readonly userId?: string | undefined
  readonly idempotencyKey: string
}

/** What `search_memories` takes. */
export interface SearchInput {
  readonly query: string
  readonly userId?: string | undefined
  readonly limit?: number | undefined
}

/** An open, validated connection. */
export interface MemoryConnection {
  /** 1 for the first connection, then one more per rebuild. */
  readonly serial: number
  /** The account the API key belongs to, as the service said at validation. */
  readonly account: string
  readonly ping: Effect.Effect<void, MemoryError>
  readonly addMemory: (input: AddInput) => Effect.Effect<AddResult, MemoryError>
  readonly searchMemories: (input: SearchInput) => Effect.Effect<SearchResult, MemoryError>
}

/** How to connect. */
export interface ConnectOptions {
  /** The MCP endpoint, e.g. `http://127.0.0.1:8000/mcp`. */
  readonly url: string
  readonly apiKey: Redacted.Redacted<string>
  /** Bound of each tool call (a hung request is a broken connection). */
  readonly requestTimeout: Duration.Duration
  readonly serial: number
  /** Sockets the connection may open to the service: the calls it can have in flight at once. Default 2. */
  readonly sockets?: number | undefined
}

/**
 * The SDK's own request timer only backs up ours (which reads the `Clock`):
 * a day, far beyond any `requestTimeout`.
 */
const sdkTimeout = 86_400_000

/** The sessions' `DELETE` on close: best effort, never holding up a rebuild for long. */
const closeTimeout = Duration.seconds(1)

/** Opens a connection to the memory service and validates the API key; closing the scope closes it. */
export const connect = (options: ConnectOptions): Effect.Effect<MemoryConnection, MemoryError, Scope.Scope> =>
  Effect.gen(function* () {
    const agent = yield* Effect.acquireRelease(
      // HTTP/1.1: one request in flight per socket, so the connection's concurrency is its socket count.
      Effect.sync(() => new Agent({ connections: options.sockets ?? 2 })),
      (agent) => Effect.promise(() => agent.destroy())
    )
    const fetch: FetchLike = async (url, init) => {
      // The SDK hands every request the transport's one long-lived signal; a listener left on it per
      // request would pile up on a long-lived connection. Each request gets a signal of its own instead,
      // tied to the transport's only while the request runs.
      const outer = init?.signal ?? undefined
      const local = new AbortController()
      const forward = () => local.abort(outer?.reason)
      if (outer?.aborted) forward()
      else outer?.addEventListener("abort", forward, { once: true })
      try {
        // `request` rather than `fetch`: a third of the CPU per call. The memory service answers JSON (or
        // nothing), never a stream, so the whole body is read here, which also frees the socket for the
        // next request even when the SDK leaves a body unread (a refused GET).
        const response = await request(url, {
          method: (init?.method ?? "GET") as Dispatcher.HttpMethod,
          headers: Object.fromEntries(new Headers(init?.headers)),
          body: typeof init?.body === "string" ? init.body : null,
          signal: local.signal,
          dispatcher: agent
        })
        const body = await response.body.arrayBuffer()
        const headers = new Headers()
        for (const [name, value] of Object.entries(response.headers)) {
          if (typeof value === "string") headers.set(name, value)
          else if (Array.isArray(value)) for (const v of value) headers.append(name, v)
        }
        const empty = response.statusCode === 204 || response.statusCode === 205 || response.statusCode === 304
        return new Response(empty ? null : body, { status: response.statusCode, headers })
      } finally {
        outer?.removeEventListener("abort", forward)
      }
    }
    const transport = new StreamableHTTPClientTransport(new URL(options.url), {
      fetch,
      requestInit: { headers: { authorization: `Bearer ${Redacted.value(options.apiKey)}` } }
    })
    const client = new Client({ name: "cistern-memory-client", version: "0.0.0" })
    // Swallowed here: every failure also rejects the request that caused it, where it is classified.
    client.onerror = () => undefined

    const call = <A>(operation: string, run: (signal: AbortSignal) => Promise<A>, timeout: Duration.Duration) =>
      Effect.tryPromise({ try: run, catch: (error) => fromUnknown(operation, error) }).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            new MemoryUnavailable({
              operation,
              reason: "timeout",
              detail: `no answer within ${Duration.format(timeout)}`
            })
        })
      )

    const tool = <A, I>(name: string, args: Record<string, unknown>, schema: Schema.Schema<A, I>) =>
      call(
        name,
        (signal) => client.callTool({ name, arguments: args }, undefined, { signal, timeout: sdkTimeout }),
        options.requestTimeout
      ).pipe(
        Effect.flatMap((result) => {
          if (result.isError === true) {
            const text = JSON.stringify(result.content)
            return Effect.fail(new MemoryProtocolError({ operation: name, detail: `the tool failed: ${text}` }))
          }
          return Schema.decodeUnknown(schema)(result.structuredContent).pipe(
            Effect.mapError(
              (error) => new MemoryProtocolError({ operation: name, detail: `unexpected result: ${error.message}` })
            )
          )
        })
      )

    yield* Effect.addFinalizer(() =>
      Effect.tryPromise(() => transport.terminateSession()).pipe(
        Effect.timeout(closeTimeout),
        Effect.ignore,
        Effect.zipRight(Effect.promise(() => client.close().catch(() => undefined)))
      )
    )
    yield* call(
      "connect",
      (signal) => client.connect(transport, { signal, timeout: sdkTimeout }),
      options.requestTimeout
    )
    const { account } = yield* tool("whoami", {}, WhoAmI)

    return {
      serial: options.serial,
      account,
      ping: Effect.asVoid(
        call("ping", (signal) => client.ping({ signal, timeout: sdkTimeout }), options.requestTimeout)
      ),
      addMemory: (input) =>
        tool(
          "add_memory",
          { text: input.text, user_id: input.userId, idempotency_key: input.idempotencyKey },
          AddResult
        ),
      searchMemories: (input) =>
        tool("search_memories", { query: input.query, user_id: input.userId, limit: input.limit }, SearchResult)
    } satisfies MemoryConnection
  })
