/**
 * A memory service as an MCP server over Streamable HTTP, the kind of
 * service a long-lived memory client talks to: tools `add_memory`,
 * `search_memories` and `whoami` (which account the API key belongs to).
 *
 * `add_memory` takes an optional `idempotency_key`: a client that retries an
 * add after a connection reset sends the same key, and the service stores the
 * memory once (see {@link MemoryStore}).
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { Effect, type Scope } from "effect"
import { z } from "zod"
import * as McpHttpHost from "./McpHttpHost.js"
import { MemoryStore, type StoreCounts } from "./MemoryStore.js"

/** Registers the memory tools on `server`, for the session of `account`. */
export const registerTools = (server: McpServer, store: MemoryStore, account: string): void => {
  server.registerTool(
    "add_memory",
    {
      description: "Stores a memory for a user. Retrying with the same idempotency_key stores it once.",
      inputSchema: {
        text: z.string().min(1),
        user_id: z.string().optional(),
        idempotency_key: z.string().optional()
      },
      outputSchema: { id: z.string(), duplicate: z.boolean() }
    },
    async ({ text, user_id, idempotency_key }) => {
      const { memory, duplicate } = store.add(user_id ?? account, text, idempotency_key)
      const result = { id: memory.id, duplicate }
      return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result }
    }
  )
  server.registerTool(
    "search_memories",
    {
      description: "Finds a user's memories sharing words with the query, best first.",
      inputSchema: {
        query: z.string(),
        user_id: z.string().optional(),
        limit: z.number().int().min(1).max(100).optional()
      },
      outputSchema: {
        results: z.array(z.object({ id: z.string(), text: z.string(), score: z.number() }))
      }
    },
    async ({ query, user_id, limit }) => {
      const result = { results: [...store.search(user_id ?? account, query, limit ?? 5)] }
      return { content: [{ type: "text", text: JSON.stringify(result) }], structuredContent: result }
    }
  )
  server.registerTool(
    "whoami",
    {
      description: "The account the API key belongs to (clients call it to validate their key).",
      outputSchema: { account: z.string() }
    },
    async () => ({ content: [{ type: "text", text: account }], structuredContent: { account } })
  )
}

/** A running memory service: its host (switches, counts) and its store. */
export interface MemoryService {
  readonly host: McpHttpHost.McpHttpHost
  readonly store: MemoryStore
  /** The host's and the store's counts together. */
  readonly counts: Effect.Effect<McpHttpHost.HostCounts & StoreCounts>
}

/** Options of {@link make}. */
export interface Options {
  /** API key → account. */
  readonly apiKeys: ReadonlyMap<string, string>
  /** Default 0: any free port of 127.0.0.1. */
  readonly port?: number | undefined
}

/** Starts a memory service on 127.0.0.1; closing the scope stops it. */
export const make = (options: Options): Effect.Effect<MemoryService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const store = new MemoryStore()
    const host = yield* McpHttpHost.make({
      port: options.port,
      apiKeys: options.apiKeys,
      makeServer: (account) => {
        const server = new McpServer({ name: "memory-service", version: "0.0.0" })
        registerTools(server, store, account)
        return server
      }
    })
    return {
      host,
      store,
      counts: Effect.map(host.counts, (counts) => ({ ...counts, ...store.counts() }))
    }
  })
