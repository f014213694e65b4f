// The folder layout of a Marian translator as transformers.js loads it (the optimum ONNX export of
// e.g. Helsinki-NLP/opus-mt-ru-en). Shared by the loader and the demo model writer.

/** Files relative to the model folder. On CPU at fp32, transformers.js looks for exactly these ONNX names. */
export const MARIAN_FILES = Object.freeze({
  config: 'config.json',
  generationConfig: 'generation_config.json',
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  encoder: 'onnx/encoder_model.onnx',
  decoder: 'onnx/decoder_model_merged.onnx',
});

/** Files a translator folder must hold (generation_config.json is optional). */
export const REQUIRED_MARIAN_FILES: readonly string[] = [
  MARIAN_FILES.config,
  MARIAN_FILES.tokenizer,
  MARIAN_FILES.tokenizerConfig,
  MARIAN_FILES.encoder,
  MARIAN_FILES.decoder,
];

export const MARIAN_LAYOUT =
  'the transformers.js Marian layout (e.g. an ONNX export of Helsinki-NLP/opus-mt-ru-en): config.json, ' +
  'tokenizer.json, tokenizer_config.json, onnx/encoder_model.onnx, onnx/decoder_model_merged.onnx';
