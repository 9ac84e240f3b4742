import { EmulatedBackend } from './backend-farm.js';

// A child process holding N emulated backends, and with a second argument k > 0 one more backend
// `direct` serving k requests at once, driven over IPC so they do not share an event loop with the
// load generator: {reset, serviceMs} -> {ok}; {stats} -> {stats: [...], direct: stats | null}.
const count = Number(process.argv[2] ?? 8);
const directSlots = Number(process.argv[3] ?? 0);
const backends = Array.from({ length: count }, (_, i) => new EmulatedBackend(`b${i + 1}`, 20));
const direct = directSlots > 0 ? new EmulatedBackend('direct', 20, directSlots) : undefined;
const all = direct ? [...backends, direct] : backends;
await Promise.all(all.map((b) => b.listen()));
process.send!({ ports: backends.map((b) => b.port), directPort: direct?.port ?? null });

process.on('message', (message: { type: 'reset'; serviceMs: number } | { type: 'stats' }) => {
  if (message.type === 'reset') {
    for (const b of all) b.reset(message.serviceMs);
    process.send!({ ok: true });
  } else {
    process.send!({ stats: backends.map((b) => b.stats()), direct: direct?.stats() ?? null });
  }
});
process.on('disconnect', () => {
  void Promise.all(all.map((b) => b.close())).then(() => process.exit(0));
});
