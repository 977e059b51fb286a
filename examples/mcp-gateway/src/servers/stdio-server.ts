/**
 * The bundled stdio MCP server, one process per connection, as stdio MCP
 * servers run: the gateway spawns it with the user's credential in
 * `TOOLS_CREDENTIAL` and speaks JSON-RPC over its stdin and stdout.
 *
 * Tools: `echo`, `add`, `sleep`, `whoami` (see `Tools.ts`) and `crash`, which
 * exits the process at once without answering, the way a server that dies
 * mid-call looks to its client. The process ends when its stdin closes.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import { fingerprint } from "../Credential.js"
import { registerTools } from "./Tools.js"

const credential = process.env.TOOLS_CREDENTIAL ?? ""
if (credential.length === 0) {
  process.stderr.write("TOOLS_CREDENTIAL is required\n")
  process.exit(2)
}

const server = new McpServer({ name: process.env.TOOLS_SERVER_NAME ?? "local-tools", version: "0.0.0" })
registerTools(server, {
  server: process.env.TOOLS_SERVER_NAME ?? "local-tools",
  connection: `pid-${process.pid}`,
  account: fingerprint(credential)
})
server.registerTool("crash", { description: "Exits this server process at once, without answering." }, async () =>
  process.exit(70)
)

process.stdin.on("end", () => process.exit(0))
await server.connect(new StdioServerTransport())
