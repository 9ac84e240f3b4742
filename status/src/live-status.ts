import { request } from 'undici';
import { stateFileSchema, type StateFile } from './schema.js';

/**
 * A running orchestrator's GET /status at `url`, validated; throws with a short reason when it
 * cannot be had. `key`, a client key with the read scope, goes as `Authorization: Bearer`.
 */
export async function fetchLiveStatus(url: string, timeoutMs: number, key?: string): Promise<StateFile> {
  let response;
  try {
    const headers = { accept: 'application/json', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) };
    response = await request(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const { name, code } = error as { name?: string; code?: string };
    throw new Error(name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (code ?? (error as Error).message));
  }
  if (response.statusCode === 401 || response.statusCode === 403) {
    await response.body.dump();
    const why = key === undefined ? 'is not set' : response.statusCode === 403 ? 'holds a key without the read scope' : 'holds a key it does not take';
    throw new Error(`answered HTTP ${response.statusCode}: a read key is needed (ORCHESTRATOR_KEY ${why})`);
  }
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new Error(`answered HTTP ${response.statusCode}`);
  }
  const parsed = stateFileSchema.safeParse(await response.body.json().catch(() => undefined));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`answered something else than a cluster state (${issue.path.join('.') || 'root'}: ${issue.message})`);
  }
  return parsed.data;
}
