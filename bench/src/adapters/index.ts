/** Every library and floor under test, by the id a child process is started with. */
import type { Adapter } from "../subject.js"
import { cisternKeyedPool, cisternKeyedShared, cisternPoolGet, cisternPoolUse } from "./cistern.js"
import { effectKeyedPool, effectPool, effectPoolShared } from "./effect.js"
import {
  arrayFloor,
  arrayFloorMap,
  asyncFifoFloor,
  noLease,
  scopedOnly,
  semaphoreFloor,
  semaphoreFloorMap,
  semaphoreFloorScoped
} from "./floors.js"
import { genericPool, genericPoolMap } from "./genericPool.js"
import { asyncHandOff, deferredHandOff } from "./handoff.js"
import { tarn, tarnMap } from "./tarn.js"

/** Adapters by id. */
export const adapters = {
  "effect-pool": effectPool,
  "effect-keyed": effectKeyedPool,
  "cistern-pool-use": cisternPoolUse,
  "cistern-pool-get": cisternPoolGet,
  "cistern-keyed": cisternKeyedPool,
  "cistern-keyed-shared": cisternKeyedShared,
  "effect-pool-shared": effectPoolShared,
  "generic-pool": genericPool,
  "generic-pool-map": genericPoolMap,
  tarn: tarn,
  "tarn-map": tarnMap,
  "floor-semaphore": semaphoreFloor,
  "floor-semaphore-scoped": semaphoreFloorScoped,
  "floor-semaphore-map": semaphoreFloorMap,
  "floor-scoped": scopedOnly,
  "floor-none": noLease,
  "floor-array": arrayFloor,
  "floor-array-map": arrayFloorMap,
  "floor-async-fifo": asyncFifoFloor,
  "floor-handoff-deferred": deferredHandOff,
  "floor-handoff-async": asyncHandOff
} as const satisfies Record<string, Adapter>

/** The id of an adapter. */
export type AdapterId = keyof typeof adapters
