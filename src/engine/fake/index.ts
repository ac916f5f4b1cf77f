/**
 * engine/fake/: a deterministic engine for tests and `--device fake`. Tokens are a function of each
 * sequence's own history (kept in its state slot), and every step checks the engine seam's
 * invariants (slots reset before use and never shared, pages never written by two live sequences
 * and read back intact, positions continuous, step budgets kept), throwing EngineError otherwise.
 */
export { FakeEngine, type FakeEngineOptions } from './fake-engine.js';
