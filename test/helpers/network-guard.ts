// The typed entry for tests; the guard itself is plain JavaScript (see network-guard.mjs).
export * from './network-guard.mjs';
