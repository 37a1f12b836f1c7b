/**
 * Why an accelerator execution provider failed to load, in words an operator can act on. onnxruntime's own
 * message is terse ("Failed to load shared library"); the usual cause is that the provider libraries were never
 * installed next to the binding (onnxruntime-node downloads them in a postinstall script, which pnpm skips unless
 * the package is allowed to build), so name the missing files and the remedy.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ExecutionProviderName } from './thread-protocol.ts';

const PROVIDER_LIBS: Partial<Record<ExecutionProviderName, string[]>> = {
  cuda: ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'],
};

/** The directory holding onnxruntime_binding.node for this platform, or undefined when it cannot be found. */
export function ortBinaryDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    const root = dirname(require.resolve('onnxruntime-node/package.json'));
    const dir = join(root, 'bin', 'napi-v6', process.platform, process.arch);
    return existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** One line: onnxruntime's message, plus the provider libraries missing from the binding's directory. */
export function explainProviderFailure(provider: ExecutionProviderName, ortMessage: string, dir = ortBinaryDir()): string {
  const libs = PROVIDER_LIBS[provider] ?? [];
  if (dir === undefined || libs.length === 0) return ortMessage;
  const missing = libs.filter((l) => !existsSync(join(dir, l)));
  if (missing.length === 0) {
    return `${ortMessage} (the ${provider} provider libraries are present in ${dir}; check the CUDA/cuDNN runtime libraries and the driver)`;
  }
  return `${ortMessage} (${missing.join(', ')} not found in ${dir}: this onnxruntime-node install has no ${provider} provider; `
    + 'install it with its postinstall script allowed to run, e.g. ONNXRUNTIME_NODE_INSTALL=cuda12 with onnxruntime-node allowed to build)';
}
