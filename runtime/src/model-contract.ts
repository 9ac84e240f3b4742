import { z } from 'zod';

/** An absolute request path without query or fragment, as a model app routes it. */
const modelPath = z.string().regex(/^\/[\w\-./~%!$&'()*+,;=:@]*$/, "expected an absolute path like /run_model (no query, no '#')");

/**
 * The HTTP contract of the model app: where `POST /new_request` goes and where it is probed.
 * Healthy = any 2xx on the health path within the probe timeout; when the answer is JSON with a
 * `container` field (as the bundled worker's is), it must also name the container probed.
 */
export const modelContractSchema = z.object({
  /** Path `POST /new_request` is forwarded to. @default '/run_model' */
  predictPath: modelPath.default('/run_model'),
  /** Path probed with `GET`. @default '/health' */
  healthPath: modelPath.default('/health'),
});
export type ModelContract = z.infer<typeof modelContractSchema>;
export const DEFAULT_CONTRACT: ModelContract = Object.freeze({ predictPath: '/run_model', healthPath: '/health' });
