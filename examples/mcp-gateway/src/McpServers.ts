/**
 * The MCP servers a gateway reaches, by name: a command it spawns per
 * connection (stdio), or a URL (Streamable HTTP).
 */
/** A server the gateway spawns, one process per connection, speaking MCP over stdio. */
export interface StdioServer {
  readonly transport: "stdio"
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly cwd?: string | undefined
  /** Variables the process gets besides a minimal environment (`PATH`, `HOME`…) and the credential. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** The variable the user's credential is handed to the process in. */
  readonly credentialVariable: string
}

/** A server reached over Streamable HTTP; the user's credential goes in `Authorization: Bearer`. */
export interface HttpServer {
  readonly transport: "http"
  readonly name: string
  readonly url: string
}

/** One server of the catalog. */
export type McpServer = StdioServer | HttpServer

/**
 * The bundled stdio server (`src/servers/stdio-server.ts`, compiled to `script`
 * by `StdioBundle`), run by this Node, its credential in `TOOLS_CREDENTIAL`.
 */
export const bundledStdio = (script: string, name = "local-tools"): StdioServer => ({
  transport: "stdio",
  name,
  command: process.execPath,
  args: [script],
  env: { TOOLS_SERVER_NAME: name },
  credentialVariable: "TOOLS_CREDENTIAL"
})
