/**
 * One pooled MCP connection: an SDK `Client` over stdio (a child process of
 * its own) or Streamable HTTP (a session of its own), opened with one user's
 * credential for one server. The SDK client runs several requests at once
 * over one transport, matching answers to requests by id.
 *
 * `connect` is what the pool runs to create a connection; closing its scope
 * ends the session (`DELETE`, best effort) or the process (stdin closed, then
 * signals), whatever state the connection is in.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import { type CallToolResult, ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js"
import { Duration, Effect, Redacted, type Scope } from "effect"
import {
  ConnectFailed,
  ConnectionLost,
  type McpError as GatewayMcpError,
  ToolRejected,
  ToolTimeout
} from "./GatewayError.js"
import type { McpServer } from "./McpServers.js"

/** A tool as the server lists it. */
export interface ToolInfo {
  readonly name: string
  readonly description?: string | undefined
}

/** An open connection. */
export interface McpConnection {
  /** The server's name in the gateway's catalog. */
  readonly server: string
  /** `pid-<pid>` of a stdio server's process, `session-<id>` of an HTTP session. */
  readonly id: string
  /** Fails with `ConnectionLost` once the transport has closed (the process exited, the session ended). */
  readonly ensureOpen: Effect.Effect<void, ConnectionLost>
  readonly callTool: (
    tool: string,
    args: Readonly<Record<string, unknown>>,
    timeout: Duration.Duration
  ) => Effect.Effect<CallToolResult, GatewayMcpError>
  readonly listTools: (timeout: Duration.Duration) => Effect.Effect<ReadonlyArray<ToolInfo>, GatewayMcpError>
}

/**
 * The SDK's own request timer only backs up ours (which reads the `Clock`):
 * a day, far beyond any call timeout.
 */
const sdkTimeout = 86_400_000

/** Ending an HTTP session on close is best effort, never holding a close up for long. */
const closeTimeout = Duration.seconds(1)

const detailOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** A failed request: the server's refusal (a JSON-RPC error) or a broken connection. */
const classify = (server: string, tool: string, error: unknown): GatewayMcpError =>
  error instanceof McpError && error.code !== ErrorCode.ConnectionClosed && error.code !== ErrorCode.RequestTimeout
    ? new ToolRejected({ server, tool, code: error.code, detail: error.message })
    : new ConnectionLost({ server, detail: detailOf(error) })

const transportOf = (server: McpServer, credential: Redacted.Redacted<string>): Transport =>
  server.transport === "stdio"
    ? new StdioClientTransport({
        command: server.command,
        args: [...server.args],
        ...(server.cwd === undefined ? {} : { cwd: server.cwd }),
        env: { ...getDefaultEnvironment(), ...server.env, [server.credentialVariable]: Redacted.value(credential) },
        stderr: "ignore"
      })
    : new StreamableHTTPClientTransport(new URL(server.url), {
        requestInit: { headers: { authorization: `Bearer ${Redacted.value(credential)}` } }
      })

/** Opens a connection to `server` with `credential`; closing the scope closes it. */
export const connect = (
  server: McpServer,
  credential: Redacted.Redacted<string>,
  timeout: Duration.Duration
): Effect.Effect<McpConnection, ConnectFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const transport = transportOf(server, credential)
    const client = new Client({ name: "cistern-mcp-gateway", version: "0.0.0" })
    let open = true
    client.onclose = () => {
      open = false
    }
    // Swallowed here: every failure also rejects the request that caused it, where it is classified.
    client.onerror = () => undefined

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (transport instanceof StreamableHTTPClientTransport && open) {
          yield* Effect.tryPromise(() => transport.terminateSession()).pipe(Effect.timeout(closeTimeout), Effect.ignore)
        }
        yield* Effect.promise(() => client.close().catch(() => undefined))
      })
    )

    yield* Effect.tryPromise({
      try: (signal) => client.connect(transport, { signal, timeout: sdkTimeout }),
      catch: (error) => new ConnectFailed({ server: server.name, detail: detailOf(error) })
    }).pipe(
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new ConnectFailed({ server: server.name, detail: `no answer within ${Duration.format(timeout)}` })
      })
    )

    const id =
      transport instanceof StdioClientTransport
        ? `pid-${transport.pid}`
        : `session-${(transport as StreamableHTTPClientTransport).sessionId?.slice(0, 8)}`

    const request = <A>(tool: string, run: (signal: AbortSignal) => Promise<A>, timeout: Duration.Duration) =>
      Effect.suspend(() =>
        open
          ? Effect.void
          : Effect.fail(new ConnectionLost({ server: server.name, detail: "the connection is closed" }))
      ).pipe(
        Effect.zipRight(Effect.tryPromise({ try: run, catch: (error) => classify(server.name, tool, error) })),
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new ToolTimeout({ server: server.name, tool, timeoutMillis: Duration.toMillis(timeout) })
        })
      )

    return {
      server: server.name,
      id,
      ensureOpen: Effect.suspend(() =>
        open
          ? Effect.void
          : Effect.fail(new ConnectionLost({ server: server.name, detail: "the connection is closed" }))
      ),
      callTool: (tool, args, timeout) =>
        request(
          tool,
          (signal) =>
            client.callTool({ name: tool, arguments: { ...args } }, undefined, {
              signal,
              timeout: sdkTimeout
            }) as Promise<CallToolResult>,
          timeout
        ),
      listTools: (timeout) =>
        request("tools/list", (signal) => client.listTools(undefined, { signal, timeout: sdkTimeout }), timeout).pipe(
          Effect.map((result) => result.tools.map((t) => ({ name: t.name, description: t.description })))
        )
    } satisfies McpConnection
  })
