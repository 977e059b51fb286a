/**
 * What can go wrong between a user's call and an MCP server, as typed values.
 * Connection failures (`ConnectionLost`, `ToolTimeout`) destroy the pooled
 * connection, so the next call gets a new one; `ToolRejected` (the server
 * refused the request: an unknown tool, invalid arguments) leaves it pooled.
 * None carries a credential.
 */
import { Data } from "effect"

/** A connection to `server` could not be opened (spawn failed, refused, rejected credential). */
export class ConnectFailed extends Data.TaggedError("ConnectFailed")<{
  readonly server: string
  readonly detail: string
}> {
  override get message() {
    return `could not connect to the MCP server ${this.server}: ${this.detail}`
  }
}

/** The connection broke during a request: the process exited, the socket or session is gone. */
export class ConnectionLost extends Data.TaggedError("ConnectionLost")<{
  readonly server: string
  readonly detail: string
}> {
  override get message() {
    return `the connection to the MCP server ${this.server} was lost: ${this.detail}`
  }
}

/** A tool call got no answer in time; the connection is presumed stuck and is closed. */
export class ToolTimeout extends Data.TaggedError("ToolTimeout")<{
  readonly server: string
  readonly tool: string
  readonly timeoutMillis: number
}> {
  override get message() {
    return `the MCP server ${this.server} did not answer ${this.tool} within ${this.timeoutMillis} ms`
  }
}

/** The server refused the request (JSON-RPC error): an unknown tool, invalid arguments. */
export class ToolRejected extends Data.TaggedError("ToolRejected")<{
  readonly server: string
  readonly tool: string
  readonly code: number
  readonly detail: string
}> {
  override get message() {
    return `the MCP server ${this.server} rejected ${this.tool}: ${this.detail}`
  }
}

/** Any failure of a call to an MCP server. */
export type McpError = ConnectFailed | ConnectionLost | ToolTimeout | ToolRejected

/** Whether `error` means the connection is broken (it is then closed, never reused). */
export const isConnectionFailure = (error: unknown): boolean =>
  error instanceof ConnectionLost || error instanceof ToolTimeout || error instanceof ConnectFailed
