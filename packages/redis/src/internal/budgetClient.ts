/**
 * Runs the budget script on a client: the keys of one budget (one hash tag,
 * so one Cluster slot), `EVALSHA` with the `EVAL` fallback ioredis's
 * `defineCommand` gives after a restart emptied the script cache, and the
 * reply decoded.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type { Redis } from "ioredis"
import type * as RedisClient from "../RedisClient.js"
import type { RedisError } from "../RedisError.js"
import { type Caller, decodeReply, encodeArgs, type Op, type Reply } from "./budgetModel.js"
import { commandName, numberOfKeys, script, testScript } from "./budgetScript.js"

/** The keys and channel of one budget. @internal */
export interface BudgetKeys {
  readonly keys: ReadonlyArray<string>
  readonly channel: string
}

/** @internal */
export const budgetKeys = (prefix: string, name: string): BudgetKeys => {
  const tag = `{${prefix}${name}}`
  return {
    keys: [`${tag}:cfg`, `${tag}:inst`, `${tag}:permits`, `${tag}:used`, `${tag}:wants`],
    channel: `${tag}:ev`
  }
}

type Command = (...args: Array<string | number>) => Promise<unknown>

/** @internal */
export interface BudgetClient {
  readonly keys: BudgetKeys
  /** Runs one operation; `clock` is read only by the test build of the script. */
  readonly call: (caller: Caller, op: Op, clock?: number) => Effect.Effect<Reply, RedisError>
}

/**
 * Defines the script on the client (idempotent) and answers a runner.
 * `testClock` selects the build of the script that reads the time from its
 * arguments instead of `TIME`: for tests only.
 *
 * @internal
 */
export const make = (
  client: RedisClient.Service,
  options: { readonly prefix: string; readonly name: string; readonly testClock: boolean }
): BudgetClient => {
  const name = commandName(options.testClock)
  const redis = client.redis as Redis & Record<string, unknown>
  if (typeof redis[name] !== "function") {
    redis.defineCommand(name, { numberOfKeys, lua: options.testClock ? testScript : script })
  }
  const keys = budgetKeys(options.prefix, options.name)
  return {
    keys,
    call: (caller, op, clock) =>
      client
        .run(`budget ${op._tag}`, (r) => {
          const command = (r as unknown as Record<string, Command>)[name]!
          return command.call(r, ...keys.keys, ...encodeArgs(caller, op, keys.channel, clock))
        })
        .pipe(Effect.map(decodeReply))
  }
}
