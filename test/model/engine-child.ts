// Child process for engine-selection tests: initialises the engine the way the CLI does and
// prints the outcome as JSON on stdout (stderr carries the "chorus: backend …" line).
import { initEngine, tf } from '../../shared/tensor/engine.ts';
import { errorMessage } from '../../shared/errors.ts';

try {
  const { backend } = await initEngine(process.argv[2] || undefined);
  const sum = tf.tidy(() => tf.sum(tf.tensor1d([1, 2, 3])).dataSync()[0]);
  process.stdout.write(JSON.stringify({ backend, active: tf.getBackend(), sum }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: errorMessage(err), name: (err as Error).name }));
}
