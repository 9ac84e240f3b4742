import { createServer, type ServerResponse } from 'node:http';
import { UpstreamClient, type UpstreamAddress } from '../../orchestrator/src/upstream/upstream-client.js';
import { upstreamOptionsFrom } from '../../orchestrator/src/upstream/upstream-client.js';
import { orchestratorConfigSchema } from '../../orchestrator/src/config.js';

// The least a Node proxy can do, as a yardstick for the orchestrator's own cost per request
// (bench/src/instructions.ts): `node floor-server PORT` answers every request itself after
// reading its body (Node's HTTP server alone); `node floor-proxy PORT BACKEND_PORTS` forwards each
// one with the orchestrator's upstream client to a free backend, one at a time per backend, the
// rest waiting in arrival order. No queue bound, timeout, metrics, retry or check of any kind.
const [mode, port, backendPorts] = process.argv.slice(2);
const ANSWER = '{"container":"floor"}';
const free: UpstreamAddress[] = (backendPorts ?? '').split(',').filter(Boolean).map((p, i) => ({ id: `b${i + 1}`, host: '127.0.0.1', port: Number(p) }));
const waiting: Array<{ res: ServerResponse; body: Buffer }> = [];
const client = new UpstreamClient(upstreamOptionsFrom(orchestratorConfigSchema.parse({})));

function dispatch(backend: UpstreamAddress, job: { res: ServerResponse; body: Buffer }): void {
  void client.send(backend, { method: 'POST', path: '/run_model', headers: { 'content-type': 'application/json' }, body: job.body }).then((answer) => {
    const next = waiting.shift();
    if (next) dispatch(backend, next);
    else free.push(backend);
    job.res.writeHead(answer.statusCode, { 'content-type': 'application/json' }).end(answer.body as Buffer);
  });
}

createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk)).on('end', () => {
    if (mode === 'floor-server') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(ANSWER);
      return;
    }
    const job = { res, body: Buffer.concat(chunks) };
    const backend = free.pop();
    if (backend) dispatch(backend, job);
    else waiting.push(job);
  });
}).listen(Number(port), '127.0.0.1');
