/**
 * A character-level RNN served two ways from the same ONNX step graph:
 *
 *   - `charrnn` (CharRnnContinuous.generate): continuous batching. Every step runs over the sequences in flight;
 *     new requests join at the next step and finished ones leave, so a short answer never waits for a long one.
 *     Each call streams its characters as they are generated.
 *   - `charrnn-static` (CharRnnStatic.complete): dynamic batching of whole requests, `batch()`: a batch runs steps
 *     until its longest sequence is done and answers all at once, the baseline continuous batching is measured
 *     against (bench/streaming/continuous.ts).
 *
 * Both produce the same characters for the same input (greedy decoding of one seeded model).
 *
 *   shoal run examples/charrnn/app.ts
 *   curl -sN localhost:8000/ -d '{"prompt":"The ","maxTokens":64}'                 # streamed, continuous
 *   curl -s 'localhost:8000/?mode=static' -d '{"prompt":"The ","maxTokens":64}'    # {"text": "..."}, static
 */
import { HttpError, batch, continuousBatch, deployment, itemError, type Handle, type ShoalRequest } from '@shoal/core';
import { checkInput, generateToCompletion, startSequence, stepSequences, type GenerateInput, type SequenceState } from './src/generate.ts';
import { CharRnn, type CharRnnSessionOptions } from './src/model.ts';

export { CharRnn, buildCharRnnModel, VOCAB, END_TOKEN } from './src/model.ts';
export { checkInput, generateToCompletion, startSequence, stepSequences, MAX_TOKENS, MAX_PROMPT_CHARS, type GenerateInput, type SequenceState } from './src/generate.ts';

/** Sequences per step in both deployments, so the comparison is of scheduling alone. */
export const MAX_BATCH_SIZE = 16;

/** Continuous batching: `generate(input)` streams one character per chunk. */
export class CharRnnContinuous {
  private model: CharRnn | undefined;

  constructor(private readonly opts: CharRnnSessionOptions = {}) {}

  async init(): Promise<void> {
    this.model = await CharRnn.load(this.opts);
  }

  generate = continuousBatch<GenerateInput, SequenceState, string>({
    start: (input) => startSequence(input, this.opts.hidden ?? 1024),
    step: (states) => stepSequences(this.loaded(), states),
  }, { maxBatchSize: MAX_BATCH_SIZE });

  private loaded(): CharRnn {
    if (this.model === undefined) throw new Error('the char RNN is not loaded; init() has not run');
    return this.model;
  }

  async shutdown(): Promise<void> {
    await this.model?.close();
  }
}

/** Static batching: `complete(input)` answers with the whole text once its batch's longest sequence is done. */
export class CharRnnStatic {
  private model: CharRnn | undefined;

  constructor(private readonly opts: CharRnnSessionOptions = {}) {}

  async init(): Promise<void> {
    this.model = await CharRnn.load(this.opts);
  }

  complete = batch<GenerateInput, string>(async (inputs) => {
    if (this.model === undefined) throw new Error('the char RNN is not loaded; init() has not run');
    const texts = await generateToCompletion(this.model, inputs);
    return texts.map((t) => (t instanceof Error ? itemError(t) : t));
  }, { maxBatchSize: MAX_BATCH_SIZE, maxWaitMs: 2 });

  async shutdown(): Promise<void> {
    await this.model?.close();
  }
}

const USAGE = 'POST {"prompt": "...", "maxTokens": 64}; ?mode=static answers {"text"} from the static-batching deployment, else the text streams\n';

/** The HTTP ingress: streams from the continuous deployment, or answers from the static one with ?mode=static. */
export class CharRnnApi {
  constructor(private readonly continuous: Handle<CharRnnContinuous>, private readonly staticBatch: Handle<CharRnnStatic>) {}

  async fetch(req: ShoalRequest): Promise<unknown> {
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} is not allowed; ${USAGE}`);
    let input: GenerateInput;
    try {
      input = checkInput(req.json());
    } catch (err) {
      if (err instanceof TypeError || err instanceof RangeError) throw new HttpError(400, `${err.message}; ${USAGE}`);
      throw err;
    }
    if (req.query.get('mode') === 'static') return { text: await this.staticBatch.complete(input) };
    // A continuousBatch field: its replicas report it as streaming, so the handle streams it without options.
    return this.continuous.generate(input);
  }
}

export const continuousModel = deployment(CharRnnContinuous, { name: 'charrnn', resources: { cpus: 1 } });
export const staticModel = deployment(CharRnnStatic, { name: 'charrnn-static', resources: { cpus: 1 } });

const api = deployment(CharRnnApi, { name: 'charrnn-api', resources: { cpus: 0.5 } });

export default api.bind(continuousModel.bind(), staticModel.bind());

/**
 * The same app with a hidden size of 2048: a step then reads 16 MiB of weights, more than this machine's caches hold,
 * so its cost hardly grows with the batch (2.9 ms for one sequence, 3.8 ms for 16, measured here), as in LLM token
 * decoding, which is memory-bound. At 1024 the weights stay in cache and a step of 16 costs about 3x a step of one.
 * bench/streaming/continuous.ts measures both.
 */
export const wide = api.bind(continuousModel.bind({ hidden: 2048 }), staticModel.bind({ hidden: 2048 }));
