/** Every scenario, in the order the report shows them. */
import { contended } from "./contended.js"
import { idle } from "./idle.js"
import { keyed } from "./keyed.js"
import type { Scenario } from "./scenario.js"
import { shared } from "./shared.js"
import { uncontended } from "./uncontended.js"

/** All scenarios. */
export const scenarios: ReadonlyArray<Scenario> = [uncontended, contended, shared, keyed, idle]
