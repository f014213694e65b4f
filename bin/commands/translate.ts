// `easel translate`: runs the prompt translator on one text, as the worker does before generation.

import { parseFlags, requireDir, requireFlag, UsageError } from './cli.ts';

export const translateUsage = `usage: easel translate --model DIR TEXT

Prints the English translation of TEXT by the Marian translator in DIR
(\`easel models demo --translator DIR\` writes a tiny demo one).
`;

export async function translateCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, { model: { type: 'string' } }, true);
  const dir = requireFlag(values.model, '--model');
  if (positionals.length !== 1) throw new UsageError('expected one TEXT argument (quote it)');
  await requireDir(dir, 'translator');
  const { loadTranslator } = await import('../../gpu-worker/models/translator.ts');
  const translator = await loadTranslator(dir);
  try {
    process.stdout.write(`${await translator.translate(positionals[0] as string)}\n`);
  } finally {
    await translator.release();
  }
}
