/**
 * The bundled MCP server over Streamable HTTP on 127.0.0.1, as a remote MCP
 * server is deployed: one stateful session per client (`Mcp-Session-Id`), a
 * bearer credential on every request, JSON responses, `DELETE` to end a
 * session.
 *
 * Tools: `echo`, `add`, `sleep`, `whoami` (see `Tools.ts`) and `hang`, which
 * never answers (until its session ends), the way a stuck server looks to its
 * client.
 *
 * It counts, per account (the fingerprint of the credential a session was
 * opened with), the sessions open now and the most ever open at once, and the
 * tool calls running now and the most ever running at once: what the server
 * side sees of a gateway's limits.
 */
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js"
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js"
import { Effect, type Scope } from "effect"
import { fingerprint } from "../Credential.js"
import { registerTools } from "./Tools.js"

/** What the server saw. */
export interface Counts {
  readonly sessionsOpened: number
  readonly sessionsClosed: number
  /** Sessions open now, per account. */
  readonly sessionsOpen: Readonly<Record<string, number>>
  /** The most sessions ever open at once, per account and in all. */
  readonly peakSessions: Readonly<Record<string, number>>
  readonly peakSessionsTotal: number
  /** Tool calls running now, per account. */
  readonly callsRunning: Readonly<Record<string, number>>
  /** The most tool calls ever running at once, per account and in all. */
  readonly peakCalls: Readonly<Record<string, number>>
  readonly peakCallsTotal: number
  /** Tool calls received, per tool. */
  readonly calls: Readonly<Record<string, number>>
  readonly unauthorized: number
}

/** A running server. */
export interface HttpToolServer {
  readonly name: string
  readonly port: number
  /** The MCP endpoint, `http://127.0.0.1:<port>/mcp`. */
  readonly url: string
  readonly counts: Effect.Effect<Counts>
  /** Forgets the peaks (the current counts stay). */
  readonly resetPeaks: Effect.Effect<void>
}

/** Options of {@link make}. */
export interface Options {
  /** The server's name in `whoami`. Default `remote-tools`. */
  readonly name?: string | undefined
  /** Default 0: any free port of 127.0.0.1. */
  readonly port?: number | undefined
  /** Which credentials are accepted. Default: any non-empty one. */
  readonly accept?: ((credential: string) => boolean) | undefined
}

interface Session {
  readonly transport: StreamableHTTPServerTransport
  readonly account: string
  readonly hanging: Set<() => void>
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body))
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => (body += chunk))
    req.on("end", () => resolve(body))
    req.on("error", reject)
  })

const bump = (counts: Record<string, number>, key: string, by: number) => {
  counts[key] = (counts[key] ?? 0) + by
  return counts[key]
}

const sum = (counts: Readonly<Record<string, number>>) => Object.values(counts).reduce((a, b) => a + b, 0)

/** Starts the server on 127.0.0.1; closing the scope stops it. */
export const make = (options: Options = {}): Effect.Effect<HttpToolServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? "remote-tools"
    const accept = options.accept ?? ((credential: string) => credential.length > 0)
    const sessions = new Map<string, Session>()
    const sockets = new Set<Socket>()
    const sessionsOpen: Record<string, number> = {}
    const callsRunning: Record<string, number> = {}
    let peakSessions: Record<string, number> = {}
    let peakCalls: Record<string, number> = {}
    let peakSessionsTotal = 0
    let peakCallsTotal = 0
    const calls: Record<string, number> = {}
    let sessionsOpened = 0
    let sessionsClosed = 0
    let unauthorized = 0

    const opened = (account: string) => {
      sessionsOpened++
      peakSessions[account] = Math.max(peakSessions[account] ?? 0, bump(sessionsOpen, account, 1))
      peakSessionsTotal = Math.max(peakSessionsTotal, sum(sessionsOpen))
    }
    const closed = (session: Session) => {
      sessionsClosed++
      bump(sessionsOpen, session.account, -1)
      for (const release of session.hanging) release()
      session.hanging.clear()
    }

    const makeServer = (account: string, connection: string, hanging: Set<() => void>) => {
      const server = new McpServer({ name, version: "0.0.0" })
      registerTools(server, { server: name, connection, account })
      server.registerTool(
        "hang",
        { description: "Never answers (until the session ends)." },
        () =>
          new Promise((resolve) => {
            const release = () => resolve({ content: [{ type: "text", text: "session ended" }], isError: true })
            hanging.add(release)
          })
      )
      return server
    }

    const openSession = async (req: IncomingMessage, res: ServerResponse, body: unknown, account: string) => {
      const id = randomUUID()
      const hanging = new Set<() => void>()
      const server = makeServer(account, `session-${id.slice(0, 8)}`, hanging)
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => id,
        enableJsonResponse: true,
        onsessioninitialized: (sid) => {
          const session = { transport, account, hanging }
          sessions.set(sid, session)
          opened(account)
        }
      })
      transport.onclose = () => {
        const session = sessions.get(id)
        if (session !== undefined) {
          sessions.delete(id)
          closed(session)
        }
      }
      await server.connect(transport)
      await transport.handleRequest(req, res, body)
    }

    /** Counts a tool call as running from its request until its answer is written. */
    const track = (res: ServerResponse, account: string, body: unknown) => {
      const messages = Array.isArray(body) ? body : [body]
      for (const message of messages) {
        if (typeof message !== "object" || message === null) continue
        const m = message as { method?: unknown; params?: { name?: unknown } }
        if (m.method !== "tools/call") continue
        const tool = typeof m.params?.name === "string" ? m.params.name : "?"
        bump(calls, tool, 1)
        peakCalls[account] = Math.max(peakCalls[account] ?? 0, bump(callsRunning, account, 1))
        peakCallsTotal = Math.max(peakCallsTotal, sum(callsRunning))
        res.once("close", () => bump(callsRunning, account, -1))
      }
    }

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      if (new URL(req.url ?? "/", "http://127.0.0.1").pathname !== "/mcp") return json(res, 404, { error: "not found" })
      const credential = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1]
      if (credential === undefined || !accept(credential)) {
        unauthorized++
        return json(res, 401, { error: "invalid or missing credential" }, { "www-authenticate": "Bearer" })
      }
      const account = fingerprint(credential)
      const header = req.headers["mcp-session-id"]
      const session = typeof header === "string" ? sessions.get(header) : undefined
      if (header !== undefined && (session === undefined || session.account !== account)) {
        return json(res, 404, { jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null })
      }
      if (req.method === "DELETE" && session !== undefined) return session.transport.handleRequest(req, res)
      if (req.method !== "POST") return json(res, 405, { error: "method not allowed" }, { allow: "POST, DELETE" })
      let body: unknown
      try {
        body = JSON.parse(await readBody(req))
      } catch {
        return json(res, 400, { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, id: null })
      }
      if (session !== undefined) {
        track(res, account, body)
        return session.transport.handleRequest(req, res, body)
      }
      if (!isInitializeRequest(body)) {
        return json(res, 400, { jsonrpc: "2.0", error: { code: -32000, message: "No session" }, id: null })
      }
      return openSession(req, res, body, account)
    }

    const http = createServer((req, res) => {
      handle(req, res).catch((error: unknown) => {
        if (!res.headersSent && !res.destroyed) json(res, 500, { error: String(error) })
      })
    })
    http.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })

    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        http.once("error", (error) => resume(Effect.die(error)))
        http.listen(options.port ?? 0, "127.0.0.1", () => {
          const address = http.address()
          resume(Effect.succeed(address !== null && typeof address === "object" ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          for (const session of sessions.values()) void session.transport.close().catch(() => undefined)
          http.close(() => resume(Effect.void))
          http.closeAllConnections()
          for (const socket of sockets) socket.destroy()
        })
    )

    return {
      name,
      port,
      url: `http://127.0.0.1:${port}/mcp`,
      counts: Effect.sync(() => ({
        sessionsOpened,
        sessionsClosed,
        sessionsOpen: { ...sessionsOpen },
        peakSessions: { ...peakSessions },
        peakSessionsTotal,
        callsRunning: { ...callsRunning },
        peakCalls: { ...peakCalls },
        peakCallsTotal,
        calls: { ...calls },
        unauthorized
      })),
      resetPeaks: Effect.sync(() => {
        peakSessions = { ...sessionsOpen }
        peakCalls = { ...callsRunning }
        peakSessionsTotal = sum(sessionsOpen)
        peakCallsTotal = sum(callsRunning)
      })
    } satisfies HttpToolServer
  })
