// The demo Kandinsky 2.1 tokenizer's vocabulary, in XLM-RoBERTa's id order: `<s>` 0, `<pad>` 1,
// `</s>` 2, `<unk>` 3, then the SentencePiece pieces, then `<mask>` last (XLM-R-large has 250,002
// ids; this one a few hundred). The pieces are the demo translator's Russian/English set
// (marian-vocab.ts), so the same prompts tokenize to whole words rather than `<unk>` in both.

import { demoVocabulary, WORD_START } from './marian-vocab.ts';

export { WORD_START };
export const BOS = '<s>';
export const PAD = '<pad>';
export const EOS = '</s>';
export const UNK = '<unk>';
export const MASK = '<mask>';

/** A Unigram entry as tokenizer.json stores it: [piece, log-probability]. */
export type ScoredPiece = [piece: string, score: number];

export const XLMR_SPECIAL_IDS = Object.freeze({ bos: 0, pad: 1, eos: 2, unk: 3 });

/** The vocabulary in id order; built the same way on every call. */
export function xlmrVocabulary(): ScoredPiece[] {
  const pieces = demoVocabulary()
    .filter(({ kind }) => kind !== 'special')
    .map(({ piece, score }): ScoredPiece => [piece, score]);
  return [[BOS, 0], [PAD, 0], [EOS, 0], [UNK, 0], ...pieces, [MASK, 0]];
}
