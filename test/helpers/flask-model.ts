import type { PredictAnswer as ModelAnswer } from '../../bench/src/model-image.js';
import { runOk } from './docker.js';

export { readHoldout, type Holdout } from '../../bench/src/model-image.js';

/** The held-out accuracy examples/flask-model/README.md promises (train.py measures 0.9711). */
export const ACCURACY_FLOOR = 0.95;

/** The full answer of `POST /predict` for one image. */
export interface PredictAnswer extends ModelAnswer {
  probabilities: number[];
  model: string;
  container: string;
}

/**
 * `docker run -d` the model image as container `name` on 127.0.0.1:`port` with host networking,
 * CONTAINER_ID `name`, plus `env` and any extra `docker run` options (before the image).
 */
export async function runFlaskModel(
  image: string,
  name: string,
  port: number,
  options: { env?: Record<string, string>; dockerArgs?: string[] } = {},
): Promise<void> {
  const env = { HOST: '127.0.0.1', PORT: String(port), CONTAINER_ID: name, ...options.env };
  const envArgs = Object.entries(env).flatMap(([key, value]) => ['-e', `${key}=${value}`]);
  await runOk('docker', ['run', '-d', '--name', name, '--network', 'host', ...envArgs, ...(options.dockerArgs ?? []), image]);
}
