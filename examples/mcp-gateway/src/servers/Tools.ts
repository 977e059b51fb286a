/**
 * The tools both bundled MCP servers offer, registered on an SDK `McpServer`:
 *
 * - `echo {text}` and `add {a, b}`: answers at once;
 * - `sleep {ms}`: answers after `ms` milliseconds (to hold a connection busy);
 * - `whoami`: which server and connection answered, and the fingerprint of the
 *   credential the connection was opened with (never the credential).
 *
 * Each server adds its own failure switch: the stdio server's `crash` exits its
 * process, the HTTP server's `hang` never answers.
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js"
import { z } from "zod"

/** Who is answering: the server's name, this connection's id, the credential's fingerprint. */
export interface Identity {
  readonly server: string
  readonly connection: string
  readonly account: string
}

const structured = (result: Record<string, unknown>): CallToolResult => ({
  content: [{ type: "text", text: JSON.stringify(result) }],
  structuredContent: result
})

/** Registers `echo`, `add`, `sleep` and `whoami` on `server`, answering as `identity`. */
export const registerTools = (server: McpServer, identity: Identity): void => {
  server.registerTool(
    "echo",
    { description: "Answers with the text it was given.", inputSchema: { text: z.string() } },
    async ({ text }) => structured({ text })
  )
  server.registerTool(
    "add",
    { description: "Adds two numbers.", inputSchema: { a: z.number(), b: z.number() } },
    async ({ a, b }) => structured({ sum: a + b })
  )
  server.registerTool(
    "sleep",
    {
      description: "Answers after `ms` milliseconds (at most 10 seconds).",
      inputSchema: { ms: z.number().int().min(0).max(10_000) }
    },
    ({ ms }) => new Promise((resolve) => setTimeout(() => resolve(structured({ sleptMs: ms })), ms))
  )
  server.registerTool(
    "whoami",
    { description: "Which server and connection answer, and the fingerprint of the connection's credential." },
    async () => structured({ ...identity })
  )
}
