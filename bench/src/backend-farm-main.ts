import { EmulatedBackend } from './backend-farm.js';

// A child process holding N emulated backends, driven over IPC, so they do not share an event
// loop with the load generator: {reset, serviceMs} -> {ok}; {stats} -> {stats: [...]}.
const count = Number(process.argv[2] ?? 8);
const backends = Array.from({ length: count }, (_, i) => new EmulatedBackend(`b${i + 1}`, 20));
await Promise.all(backends.map((b) => b.listen()));
process.send!({ ports: backends.map((b) => b.port) });

process.on('message', (message: { type: 'reset'; serviceMs: number } | { type: 'stats' }) => {
  if (message.type === 'reset') {
    for (const b of backends) b.reset(message.serviceMs);
    process.send!({ ok: true });
  } else {
    process.send!({ stats: backends.map((b) => b.stats()) });
  }
});
process.on('disconnect', () => {
  void Promise.all(backends.map((b) => b.close())).then(() => process.exit(0));
});
