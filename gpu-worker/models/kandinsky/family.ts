// Kandinsky 2.1 and 2.2 as one model family: what the registry in load-model.ts needs to know.
import type { ModelFamily } from '../text-to-image.ts';
import { kandinskyCapabilities } from './capabilities.ts';
import {
  KANDINSKY_CLASS_NAMES,
  KANDINSKY_FETCH_FILES,
  KANDINSKY_LAYOUT,
  kandinskyVersion,
} from './layout.ts';

export const kandinsky: ModelFamily = {
  name: 'kandinsky',
  classNames: Object.keys(KANDINSKY_CLASS_NAMES),
  layout: KANDINSKY_LAYOUT,
  fetchFiles: KANDINSKY_FETCH_FILES,
  async capabilities(dir) {
    return kandinskyCapabilities(await kandinskyVersion(dir));
  },
  async load(dir, options) {
    // Imported when a model loads, so reading the registry never loads ONNX Runtime.
    const { loadKandinsky } = await import('./pipeline.ts');
    return loadKandinsky(dir, options);
  },
};
