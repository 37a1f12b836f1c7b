/**
 * The few lines of KServe v2 binary tensor protocol the quantization bench and its test speak: one float32 input
 * of [rows, width] in, the first output back as float32. Outputs are asked for as binary so a 256 x 2048 answer
 * is not printed as JSON numbers (which would round them and hide the errors being measured).
 */

/** A request body and its inference-header-content-length, for fetch() or for the load generator's bodyFile. */
export function inferBody(input: string, output: string, x: Float32Array, rows: number): { body: Buffer; headerLength: number } {
  if (rows < 1 || x.length % rows !== 0) throw new RangeError(`rows must divide the input's ${x.length} values, got ${rows}`);
  const header = Buffer.from(JSON.stringify({
    inputs: [{ name: input, shape: [rows, x.length / rows], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }],
    outputs: [{ name: output, parameters: { binary_data: true } }],
  }));
  return { body: Buffer.concat([header, Buffer.from(x.buffer, x.byteOffset, x.byteLength)]), headerLength: header.byteLength };
}

/** POSTs one request to `${base}/v2/models/${model}/infer` and returns the first output's values. */
export async function inferRows(base: string, model: string, x: Float32Array, rows: number, names: { input: string; output: string } = { input: 'x', output: 'y' }): Promise<Float32Array> {
  const { body, headerLength } = inferBody(names.input, names.output, x, rows);
  const res = await fetch(`${base}/v2/models/${model}/infer`, {
    method: 'POST', body, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
  });
  const raw = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`model "${model}" answered HTTP ${res.status}: ${raw.toString().slice(0, 300)}`);
  const jsonLength = Number(res.headers.get('inference-header-content-length'));
  const head = JSON.parse(raw.subarray(0, jsonLength).toString()) as { outputs: Array<{ name: string; datatype: string; parameters?: { binary_data_size?: number } }> };
  const out = head.outputs[0];
  const size = out?.parameters?.binary_data_size;
  if (out === undefined || out.datatype !== 'FP32' || size === undefined) throw new Error(`model "${model}" answered no binary FP32 output: ${raw.subarray(0, jsonLength).toString().slice(0, 300)}`);
  // Copied: the body's offset need not be a multiple of 4.
  return new Float32Array(Uint8Array.from(raw.subarray(jsonLength, jsonLength + size)).buffer);
}
