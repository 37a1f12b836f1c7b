/** A held reference to a named weight blob; the blob stays resident on its device while any reference is held. */
import type { NativeRuntimeHandle } from './addon-types.ts';
import { native } from './errors.ts';

export class BlobRef {
  /** @internal */
  constructor(private readonly h: NativeRuntimeHandle, readonly name: string, readonly device: number, readonly ref: number) {}

  /** Drops the reference; a second release raises InvalidHandleError. The blob stays cached until memory is needed. */
  release(): void {
    native(() => this.h.releaseBlob(this.device, this.ref));
  }
}
