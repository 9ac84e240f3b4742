import { request } from 'undici';
import { stateFileSchema, type StateFile } from './schema.js';

/** A running orchestrator's GET /status at `url`, validated; throws with a short reason when it cannot be had. */
export async function fetchLiveStatus(url: string, timeoutMs: number): Promise<StateFile> {
  let response;
  try {
    response = await request(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const { name, code } = error as { name?: string; code?: string };
    throw new Error(name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (code ?? (error as Error).message));
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
