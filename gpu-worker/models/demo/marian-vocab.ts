// The shared ru/en SentencePiece-style vocabulary of the demo translator. Real opus-mt-ru-en has
// ~62.5k pieces; this one has a few hundred, chosen so that typical Russian prompts tokenize to
// whole-word pieces (not <unk>) and the decoder has English words to emit. Ids follow Marian's
// convention: `</s>` is 0, `<unk>` is 1, `<pad>` (also the decoder start token) is the last id.

export const EOS = '</s>';
export const UNK = '<unk>';
export const PAD = '<pad>';
/** SentencePiece's word-boundary marker (U+2581), which Metaspace puts in place of spaces. */
export const WORD_START = '\u2581';

const RUSSIAN_WORDS = `
красный красная красное красные синий синяя синее зелёный зеленый зелёная жёлтый желтый белый белая
белое чёрный черный чёрная серый розовый фиолетовый оранжевый золотой золотая серебряный яркий
тёмный темный светлый кот кошка котёнок собака щенок лошадь птица рыба дракон робот единорог лиса
волк медведь сова дом доме замок замке город городе улица улице деревня мост башня храм комната окно
на в во и с со под над у за из по к о от для без около перед возле между крыше крыша небо небе
море море берег берегу лес лесу горы гора горах река реке озеро поле поле сад саду пустыня остров
ночь ночью день днём утро вечер закат рассвет солнце луна звёзды звезды облака туман дождь снег
зима зимой лето летом осень осенью весна весной девушка мальчик девочка мужчина женщина ребёнок
старик люди человек портрет пейзаж картина картина фото фотография рисунок стиле стиль масло
акварель красивый красивая красивое большой большая маленький маленькая старый старая новый новая
космос космосе космонавт корабль поезд машина самолёт цветы цветок цветами дерево деревья лист
огонь вода свет тень стекло камень металл высокое качество детально реалистичный фэнтези сидит
стоит летит бежит спит играет смотрит держит это как очень много один два три
`;

const RUSSIAN_SUBWORDS = `
ый ий ой ая яя ое ее ые ие ого его ому ему ом ем ах ях ами ями ов ев ей ам ям ть ся сь ет ит ут ют
ат ят ка ки ку ок ек ин ост ость ени ние ия ство тель ник при про по пере раз на за до от вы об ст
ск нн ль ра ро ре ри ла ло ле ли на но не ни та то те ти ва во ве ви ма мо ме ми да до де ди
`;

const ENGLISH_WORDS = `
the a an of in on at with and or to by for from under over above near between red blue green
yellow white black grey gray pink purple orange golden silver bright dark light cat kitten dog
puppy horse bird fish dragon robot unicorn fox wolf bear owl house castle city street village
bridge tower temple room window roof sky sea shore forest mountains mountain river lake field
garden desert island night day morning evening sunset sunrise sun moon stars clouds fog rain snow
winter summer autumn spring girl boy man woman child old people person portrait landscape
painting photo photograph drawing style oil watercolor beautiful big small large little new
space astronaut ship train car plane flowers flower tree trees leaf fire water shadow glass stone
metal high quality detailed realistic fantasy sitting standing flying running sleeping playing
looking holding this as very many one two three art digital cinematic lighting
`;

const ENGLISH_SUBWORDS = `
s es ed ing er est ly y tion ness ful less able al ic ous ment un re th ch sh st an en in on er
ar or ou ow ea ee oo
`;

const CYRILLIC_LETTERS = 'абвгдеёжзийклмнопрстуфхцчшщъыьэюя';
const LATIN_LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const PUNCTUATION = `.,!?-:;'"()`;

export type PieceKind = 'special' | 'cyrillic' | 'latin' | 'other';

export interface Piece {
  piece: string;
  /** Unigram log-probability: whole words beat subwords beat single characters. */
  score: number;
  kind: PieceKind;
}

function words(list: string): string[] {
  return list.split(/\s+/).filter(Boolean);
}

function kindOf(piece: string): PieceKind {
  if (/\p{Script=Cyrillic}/u.test(piece)) return 'cyrillic';
  if (/[a-z]/i.test(piece)) return 'latin';
  return 'other';
}

/** The vocabulary in id order; `<pad>` is last. Built the same way on every call. */
export function demoVocabulary(): Piece[] {
  const pieces: Piece[] = [
    { piece: EOS, score: 0, kind: 'special' },
    { piece: UNK, score: 0, kind: 'special' },
  ];
  const seen = new Set<string>([EOS, UNK, PAD]);
  const add = (piece: string, score: number) => {
    if (seen.has(piece)) return;
    seen.add(piece);
    pieces.push({ piece, score, kind: kindOf(piece) });
  };
  add(WORD_START, -6);
  for (const word of [...words(RUSSIAN_WORDS), ...words(ENGLISH_WORDS)]) add(WORD_START + word, -3);
  for (const sub of [...words(RUSSIAN_SUBWORDS), ...words(ENGLISH_SUBWORDS)]) add(sub, -5);
  const letters = [...CYRILLIC_LETTERS, ...LATIN_LETTERS];
  for (const letter of letters) add(WORD_START + letter, -7);
  for (const char of [...letters, ...letters.map((c) => c.toUpperCase()), ...DIGITS, ...PUNCTUATION]) {
    add(char, -8);
  }
  for (const char of [...DIGITS, ...PUNCTUATION]) add(WORD_START + char, -8);
  pieces.push({ piece: PAD, score: 0, kind: 'special' });
  return pieces;
}
