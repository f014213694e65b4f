// `easel tokenize`: the token ids the text encoder receives for a prompt, to debug prompts and
// compare with other implementations (BOS and EOS included, padding left off).

import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseFlags, requireDir, requireFlag, UsageError } from './cli.ts';

export const tokenizeUsage = `usage: easel tokenize --model DIR TEXT

Prints the CLIP token ids of TEXT as a JSON array, BOS and EOS included, no padding.
DIR is a model folder (its tokenizer/ is used) or a tokenizer folder.
`;

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

export async function tokenizeCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, { model: { type: 'string' } }, true);
  const dir = requireFlag(values.model, '--model');
  if (positionals.length !== 1) throw new UsageError('expected one TEXT argument (quote it)');
  const text = positionals[0] as string;
  await requireDir(dir, 'model');
  const tokenizerDir = (await isDir(join(dir, 'tokenizer'))) ? join(dir, 'tokenizer') : dir;
  const { loadClipTokenizer } = await import('../../gpu-worker/models/clip-tokenizer.ts');
  const tokenizer = await loadClipTokenizer(tokenizerDir, dir);
  const { ids, truncated } = tokenizer.encode(text);
  // encode() pads to the encoder's length after EOS (the pad token may itself be EOS).
  const end = ids.indexOf(tokenizer.eosId, 1);
  process.stdout.write(`${JSON.stringify(end === -1 ? ids : ids.slice(0, end + 1))}\n`);
  if (truncated) {
    process.stderr.write(`note: the text was cut to the text encoder's ${tokenizer.maxLength} tokens\n`);
  }
}
