/** shoal/onnx: the public API of @shoal/onnx (see that package's index for an example). */
export * from '@shoal/onnx';
