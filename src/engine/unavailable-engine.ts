/**
 * The engine selected when the requested one cannot run here (e.g. --device cuda without the
 * native addon or without a GPU). Every call fails with the same clear EngineError, so start-up
 * (Scheduler.start → describe) stops with a one-line reason instead of a crash later.
 */
import { EngineError, type CacheSizes, type Engine, type EngineDescription, type StepPlan, type StepResult } from './engine.js';

export class UnavailableEngine implements Engine {
  constructor(readonly reason: string) {}

  private fail(): never {
    throw new EngineError(this.reason, 'ZMB_ENGINE_UNAVAILABLE', false);
  }

  describe(): EngineDescription {
    return this.fail();
  }

  async initCache(_sizes: CacheSizes): Promise<void> {
    this.fail();
  }

  async step(_plan: StepPlan): Promise<StepResult> {
    return this.fail();
  }

  async copySlot(_src: number, _dst: number): Promise<void> {
    this.fail();
  }

  async close(): Promise<void> {
    // Nothing was allocated.
  }
}
