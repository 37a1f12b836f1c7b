/**
 * Writes the GEMM-heavy MLP of bench/models (4 layers of 2048x2048 float32 MatMul + Add + Relu, seeded weights,
 * 64 MiB) to a file. The bench calls it into a temp directory; run it by hand to get the model for other uses:
 *
 *   node --import tsx bench/models/make-mlp.ts /tmp/mlp.onnx [--hidden 2048] [--layers 4]
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildMlpModel, type MlpOptions } from '@shoal/onnx';

export async function writeMlpModel(path: string, opts: MlpOptions = {}): Promise<void> {
  const out = createWriteStream(path);
  for (const chunk of buildMlpModel(opts)) {
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { hidden: { type: 'string' }, layers: { type: 'string' } } });
  const path = positionals[0];
  if (path === undefined) {
    process.stderr.write('usage: make-mlp.ts OUT.onnx [--hidden 2048] [--layers 4]\n');
    process.exit(2);
  }
  await writeMlpModel(path, { ...(values.hidden ? { hidden: Number(values.hidden) } : {}), ...(values.layers ? { layers: Number(values.layers) } : {}) });
  process.stdout.write(`wrote ${path}\n`);
}
