/**
 * Greedy generation with the char RNN, one step at a time over a batch of sequences: the same step serves the
 * continuous deployment (sequences join and leave between steps) and the static one (a batch runs until its
 * longest sequence is done). A sequence first reads its prompt, one character per step with nothing emitted, then
 * emits one character per step until it has `maxTokens` or the model predicts the end char (a newline).
 */
import type { StepOutput } from '@shoal/core';
import { END_TOKEN, VOCAB, tokenOf, type CharRnn } from './model.ts';

export interface GenerateInput {
  /** Newline and printable ASCII only; may be empty. */
  prompt: string;
  /** Characters to generate at most, in [1, MAX_TOKENS]. */
  maxTokens: number;
}

export const MAX_PROMPT_CHARS = 4096;
export const MAX_TOKENS = 4096;

export interface SequenceState {
  /** Prompt tokens after a leading end token (the start of a line), so an empty prompt has something to read. */
  readonly prompt: Int32Array;
  /** Next prompt position to read; past the prompt, the sequence generates. */
  pos: number;
  /** The last generated token: the next step's input once the prompt is read. */
  token: number;
  hidden: Float32Array;
  produced: number;
  readonly maxTokens: number;
}

/** Checks a request's input; a TypeError or RangeError names the field and the value. */
export function checkInput(input: unknown): GenerateInput {
  if (typeof input !== 'object' || input === null) throw new TypeError(`input must be an object { prompt, maxTokens }, got ${input === null ? 'null' : typeof input}`);
  const { prompt, maxTokens } = input as Partial<GenerateInput>;
  if (typeof prompt !== 'string') throw new TypeError(`input.prompt must be a string, got ${typeof prompt}`);
  if (prompt.length > MAX_PROMPT_CHARS) throw new RangeError(`input.prompt has ${prompt.length} characters; at most ${MAX_PROMPT_CHARS}`);
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens)) throw new TypeError(`input.maxTokens must be an integer, got ${JSON.stringify(maxTokens)}`);
  if (maxTokens < 1 || maxTokens > MAX_TOKENS) throw new RangeError(`input.maxTokens must be in [1, ${MAX_TOKENS}], got ${maxTokens}`);
  for (const ch of prompt) tokenOf(ch);
  return { prompt, maxTokens };
}

export function startSequence(input: unknown, hidden: number): SequenceState {
  const { prompt, maxTokens } = checkInput(input);
  const tokens = new Int32Array(prompt.length + 1);
  tokens[0] = END_TOKEN;
  for (let i = 0; i < prompt.length; i++) tokens[i + 1] = tokenOf(prompt[i]!);
  return { prompt: tokens, pos: 0, token: END_TOKEN, hidden: new Float32Array(hidden), produced: 0, maxTokens };
}

/** Runs one step over `states` (updated in place) and returns each sequence's character, if it produced one. */
export async function stepSequences(model: CharRnn, states: readonly SequenceState[]): Promise<Array<StepOutput<string>>> {
  const B = states.length;
  const H = model.hidden;
  const tokens = new BigInt64Array(B);
  const hidden = new Float32Array(B * H);
  for (let i = 0; i < B; i++) {
    const s = states[i]!;
    tokens[i] = BigInt(s.pos < s.prompt.length ? s.prompt[s.pos++]! : s.token);
    hidden.set(s.hidden, i * H);
  }
  const out = await model.step(tokens, hidden);
  const outputs: Array<StepOutput<string>> = new Array(B);
  for (let i = 0; i < B; i++) {
    const s = states[i]!;
    s.hidden = out.hidden.slice(i * H, (i + 1) * H);
    if (s.pos < s.prompt.length) { outputs[i] = { done: false }; continue; }
    const next = Number(out.next[i]);
    s.token = next;
    if (next === END_TOKEN) { outputs[i] = { done: true }; continue; }
    s.produced++;
    outputs[i] = { emit: VOCAB[next]!, done: s.produced >= s.maxTokens };
  }
  return outputs;
}

/**
 * Static batching's batch function: starts every sequence of the batch and steps the unfinished ones until all
 * are done, so each answer waits for the batch's longest sequence. A bad input fails only its own item.
 */
export async function generateToCompletion(model: CharRnn, inputs: readonly unknown[]): Promise<Array<string | Error>> {
  const texts: Array<string | Error> = inputs.map(() => '');
  const states: Array<SequenceState | undefined> = inputs.map((input, i) => {
    try {
      return startSequence(input, model.hidden);
    } catch (err) {
      texts[i] = err as Error;
      return undefined;
    }
  });
  let live = states.flatMap((s, i) => (s === undefined ? [] : [i]));
  while (live.length > 0) {
    const outputs = await stepSequences(model, live.map((i) => states[i]!));
    const next: number[] = [];
    outputs.forEach((o, j) => {
      const i = live[j]!;
      if (o.emit !== undefined) texts[i] = `${texts[i] as string}${o.emit}`;
      if (!o.done) next.push(i);
    });
    live = next;
  }
  return texts;
}
