/**
 * `shoal batch DEPLOYMENT --input in.jsonl --output out.jsonl`: runBatch against a running cluster, progress on
 * stderr, Ctrl-C writes a final checkpoint (exit 130) and a rerun resumes. Exit codes (docs/batch.md): 0 every
 * line answered, 1 the run finished with error lines, 2 refused before it ran (usage, unknown deployment or method,
 * a checkpoint that does not match), 3 stopped part way on an error (its checkpoint stands), 130/143 interrupted.
 */
import { parseArgs } from 'node:util';
import { InvalidOptionError, env } from '@shoal/core';
import { resolveToken } from '@shoal/protocol';
import { BatchError } from './errors.ts';
import { runBatch, type ResumeMode } from './run-batch.ts';

export const BATCH_USAGE = `batch options (shoal batch APP/DEPLOYMENT --input IN.jsonl --output OUT.jsonl; docs/batch.md):
  --method NAME                       the method each line is passed to (default: call); a line is its one
                                      argument, or {"args": [...]} for several
  --concurrency N                     calls in flight (default: replicas x maxOngoingRequests, at most 1024)
  --resume | --restart                resume from OUT.jsonl.shoal-checkpoint (the default when it matches the
                                      input), or start over and overwrite OUT.jsonl
  --window N  --window-bytes B        lines (default max(1024, 4 x concurrency)) and bytes (default 256 MiB)
                                      between read and written, at most
  --max-line-bytes B                  longest input line (default 64 MiB)
  --checkpoint-ms MS                  checkpoint at least this often (default 1000; also every 10000 lines)
  --retries N                         a line failing transiently (worker gone, no replica, overload, deadline)
                                      is called again up to N times, backing off 100 ms to 5 s (default 5; 0:
                                      never); a call that may have run is run again
  --quiet                             no progress on stderr
  exit: 0 all lines ok, 1 some lines failed, 2 refused (usage, unknown target, checkpoint mismatch),
        3 stopped on an error (resumable), 130 interrupted (resumable)
`;

function intOf(name: string, raw: string | undefined, min = 1): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new InvalidOptionError(`--${name}`, `must be an integer >= ${min}`, raw);
  return n;
}

export async function batchCommand(argv: string[], io: { stderr: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean } } = { stderr: process.stderr }): Promise<number> {
  const write = (s: string): void => { io.stderr.write(s); };
  let controller: AbortController | undefined;
  let signalExit = 130;
  const onSignal = (sig: NodeJS.Signals): void => {
    signalExit = sig === 'SIGTERM' ? 143 : 130;
    // A second Ctrl-C does not wait for the final checkpoint: the last one written stands.
    if (controller?.signal.aborted === true) process.exit(signalExit);
    write(`\nshoal batch: ${sig}: stopping, writing the checkpoint (again to quit at once)\n`);
    controller?.abort();
  };
  try {
    const { values, positionals } = parseArgs({
      args: argv, allowPositionals: true,
      options: {
        input: { type: 'string', short: 'i' }, output: { type: 'string', short: 'o' }, method: { type: 'string' }, concurrency: { type: 'string' },
        resume: { type: 'boolean' }, restart: { type: 'boolean' }, window: { type: 'string' }, 'window-bytes': { type: 'string' },
        'max-line-bytes': { type: 'string' }, 'checkpoint-ms': { type: 'string' }, retries: { type: 'string' }, quiet: { type: 'boolean' },
        address: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help === true) { process.stdout.write(BATCH_USAGE); return 0; }
    if (positionals.length !== 1) throw new InvalidOptionError('DEPLOYMENT', 'shoal batch takes one deployment: APP/DEPLOYMENT, or DEPLOYMENT when only one application has it', positionals.join(' ') || undefined);
    if (values.input === undefined) throw new InvalidOptionError('--input', 'is required: the JSON-lines file to run');
    if (values.output === undefined) throw new InvalidOptionError('--output', 'is required: the file the answers go to');
    if (values.resume === true && values.restart === true) throw new InvalidOptionError('--restart', 'cannot be combined with --resume');
    const address = values.address ?? env.address();
    if (address === undefined) throw new InvalidOptionError('--address', 'is required (ws://HOST:PORT of the head), or set SHOAL_ADDRESS');
    const token = resolveToken({ token: values.token, tokenFile: values['token-file'] }, (m) => write(`shoal: warning: ${m}\n`));
    if (token === undefined) throw new InvalidOptionError('--token-file', 'is required to talk to a head (a file holding the token `shoal start` printed), or set SHOAL_TOKEN');
    const resume: ResumeMode = values.restart === true ? 'restart' : values.resume === true ? 'resume' : 'auto';
    const concurrency = intOf('concurrency', values.concurrency);
    const maxWindowItems = intOf('window', values.window);
    const maxWindowBytes = intOf('window-bytes', values['window-bytes']);
    const maxLineBytes = intOf('max-line-bytes', values['max-line-bytes']);
    const checkpointEveryMs = intOf('checkpoint-ms', values['checkpoint-ms']);
    const retries = intOf('retries', values.retries, 0);
    controller = new AbortController();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const r = await runBatch({
      input: values.input, output: values.output, resume, signal: controller.signal,
      cluster: { address, token, deployment: positionals[0]!, ...(values.method !== undefined ? { method: values.method } : {}) },
      ...(concurrency !== undefined ? { concurrency } : {}), ...(maxWindowItems !== undefined ? { maxWindowItems } : {}),
      ...(maxWindowBytes !== undefined ? { maxWindowBytes } : {}), ...(maxLineBytes !== undefined ? { maxLineBytes } : {}),
      ...(checkpointEveryMs !== undefined ? { checkpointEveryMs } : {}), ...(retries !== undefined ? { retries } : {}),
      ...(values.quiet === true ? {} : { progress: io.stderr }),
      onStart: (s) => {
        if (values.quiet === true) return;
        write(`shoal batch: ${s.target ?? ''} ${s.resumedAfterLine > 0 ? `resuming after line ${s.resumedAfterLine} (byte ${s.offset} of ${s.inputBytes})` : 'from the start'}, ${s.concurrency} calls in flight\n`);
      },
    });
    const summary = `${r.ok} lines answered, ${r.failed} failed${r.skipped > 0 ? `, ${r.skipped} blank skipped` : ''}${r.resumedAfterLine > 0 ? ` (resumed after line ${r.resumedAfterLine})` : ''}`
      + `${r.overloadRetries > 0 ? `; ${r.overloadRetries} calls sent again after overload refusals (fewer with a lower --concurrency)` : ''}`
      + `${r.retries > 0 ? `; ${r.retries} calls made again after transient failures` : ''}`;
    if (r.interrupted) {
      write(`shoal batch: interrupted after line ${r.line}: ${summary}; run the same command again to resume\n`);
      return signalExit;
    }
    write(`shoal batch: done: ${summary} -> ${values.output}\n`);
    return r.failed > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof BatchError) { write(`shoal batch: ${err.message}\n`); return err.exitCode; }
    if (err instanceof InvalidOptionError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (err as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      write(`shoal batch: ${(err as Error).message}\n`);
      return 2;
    }
    write(`shoal batch: ${(err as Error).message ?? String(err)}\n`);
    return 3;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
