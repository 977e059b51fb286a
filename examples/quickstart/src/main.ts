/**
 * `pnpm start`: runs the quickstart and narrates it. Everything it starts
 * lives in scopes, so it stops by itself once the program ends.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Logger from "effect/Logger"
import { program } from "./Quickstart.js"

Effect.runPromiseExit(program.pipe(Effect.provide(Logger.pretty))).then((exit) => {
  if (Exit.isFailure(exit)) {
    console.error(Cause.pretty(exit.cause))
    process.exitCode = 1
  }
})
