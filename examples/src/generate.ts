/**
 * Generates the demo data set: the task "reverse a list of digits" (prompt `reverse 3 9 1 4`, response
 * `4 1 9 3`, lists of 3–5 digits), small enough to train a tiny model on a laptop, with defects planted on
 * purpose so that every data stage has something to show:
 *
 *   train.jsonl        UTF-8 `{id, prompt, response}`; 3 malformed lines (a truncated object, an array, an
 *                      object without "response"), 5 exact duplicate lines, 4 records with stray control
 *                      characters, 4 with extra whitespace, 1 with an e-mail address and 1 with a phone number;
 *   extra.csv          Shift_JIS, header `id,prompt,response`, CRLF; prompts written with full-width letters,
 *                      digits and spaces that NFKC turns into the ASCII form; 1 row with too many columns and
 *                      1 row with bytes that are not Shift_JIS;
 *   preferences.jsonl  `{prompt, chosen, rejected}` pairs for DPO: chosen is the exact reversal, rejected is
 *                      the list unreversed or the reversal with two neighbouring digits swapped.
 *
 * Every digit list is drawn once, across all three files, so the only duplicates are the planted ones and no
 * preference prompt repeats a training prompt. A seeded PRNG makes the output byte-for-byte reproducible.
 *
 * CLI: `tsx examples/src/generate.ts [OUT_DIR] [--records N] [--seed N]` (OUT_DIR defaults to examples/demo/data).
 */
import fs from 'node:fs';
import path from 'node:path';
import iconv from 'iconv-lite';

/** Where the demo spec (examples/demo/pipeline.yaml) expects its data. */
export const DEMO_DATA_DIR = path.resolve(__dirname, '..', 'demo', 'data');
export const DEMO_SPEC_PATH = path.resolve(__dirname, '..', 'demo', 'pipeline.yaml');

export interface GenerateOptions {
  /** Well-formed records in train.jsonl (planted duplicates included); default 2000, at least 40. */
  records?: number;
  /** Well-formed records in extra.csv; default 15% of `records`. */
  csvRecords?: number;
  /** Pairs in preferences.jsonl; default 15% of `records`. */
  preferencePairs?: number;
  /** PRNG seed; default 42. */
  seed?: number;
}

/** What was written, including the defects planted by design, so tests can predict every stage's counts. */
export interface DemoDataSummary {
  outDir: string;
  seed: number;
  train: {
    path: string;
    /** Non-blank lines: records + malformed. */
    lines: number;
    /** Well-formed records, duplicates included. */
    records: number;
    /** 1-based line numbers of the malformed lines, ascending. */
    malformedLines: number[];
    duplicates: number;
    controlChars: number;
    extraWhitespace: number;
    emails: number;
    phones: number;
  };
  extra: {
    path: string;
    /** Data rows below the header: records + malformed. */
    rows: number;
    records: number;
    /** 1-based row numbers (the header is row 1) of the unreadable rows. */
    wrongColumnRows: number[];
    invalidByteRows: number[];
  };
  preferences: { path: string; pairs: number };
  /** Sums over train.jsonl and extra.csv. */
  totals: { inputRows: number; wellFormed: number; malformed: number; duplicates: number };
}

/** mulberry32: tiny, fast and good enough for test data; Math.random cannot be seeded. */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const FULLWIDTH_DIGITS = '０１２３４５６７８９';
const FULLWIDTH_REVERSE = 'ｒｅｖｅｒｓｅ';
const IDEOGRAPHIC_SPACE = '\u3000';

export function generateDemoData(outDir: string = DEMO_DATA_DIR, options: GenerateOptions = {}): DemoDataSummary {
  const records = options.records ?? 2000;
  const csvRecords = options.csvRecords ?? Math.round(records * 0.15);
  const preferencePairs = options.preferencePairs ?? Math.round(records * 0.15);
  const seed = options.seed ?? 42;
  if (!Number.isInteger(records) || records < 40) throw new Error('records must be an integer of at least 40');
  if (!Number.isInteger(csvRecords) || csvRecords < 2) throw new Error('csvRecords must be an integer of at least 2');
  if (!Number.isInteger(preferencePairs) || preferencePairs < 1) throw new Error('preferencePairs must be a positive integer');

  const random = prng(seed);
  const int = (n: number) => Math.floor(random() * n);
  const seen = new Set<string>();
  /** A digit list never drawn before (there are 111,000 lists of 3–5 digits; we need a few thousand). */
  const freshList = (accept: (digits: number[]) => boolean = () => true): number[] => {
    for (;;) {
      const digits = Array.from({ length: 3 + int(3) }, () => int(10));
      const id = digits.join('');
      if (seen.has(id) || !accept(digits)) continue;
      seen.add(id);
      return digits;
    }
  };
  const reversal = (digits: number[]) => [...digits].reverse().join(' ');

  fs.mkdirSync(outDir, { recursive: true });

  // --- train.jsonl -------------------------------------------------------------------------------------
  const DUPLICATES = 5;
  const base = Array.from({ length: records - DUPLICATES }, (_, i) => {
    const digits = freshList();
    return { id: `t${String(i + 1).padStart(5, '0')}`, prompt: `reverse ${digits.join(' ')}`, response: reversal(digits) };
  });
  // Plant the text defects on distinct records; the first 20% stay pristine to serve as duplicate sources.
  const pristine = Math.floor(base.length * 0.2);
  const defectTargets = new Set<number>();
  const takeTarget = () => {
    for (;;) {
      const i = pristine + int(base.length - pristine);
      if (defectTargets.has(i)) continue;
      defectTargets.add(i);
      return base[i];
    }
  };
  // A control character glued to a digit: stripping it leaves a clean "d d" with no double space behind.
  for (const control of ['\u0007', '\u001b', '\u0000']) {
    const r = takeTarget();
    r.prompt = r.prompt.replace(/\d/, (d) => d + control);
  }
  const inResponse = takeTarget();
  inResponse.response = inResponse.response.replace(/\d/, (d) => d + '\u007f');
  for (const mutate of [
    (r: { prompt: string; response: string }) => (r.prompt = r.prompt.replace(' ', '  ')),
    (r: { prompt: string; response: string }) => (r.prompt = r.prompt.replace(' ', '\t')),
    (r: { prompt: string; response: string }) => (r.prompt = `  ${r.prompt}`),
    (r: { prompt: string; response: string }) => (r.response = `${r.response} `),
  ]) mutate(takeTarget());
  const emailRecord = takeTarget();
  emailRecord.prompt += ' (from ann@example.com)';
  const phoneRecord = takeTarget();
  phoneRecord.prompt += ' (call +81 90-1234-5678)';

  const trainLines = base.map((r) => JSON.stringify(r));
  // Exact copies of pristine lines, each inserted somewhere after its original.
  for (let d = 0; d < DUPLICATES; d++) {
    const source = int(pristine);
    const line = trainLines[source];
    trainLines.splice(source + 1 + int(trainLines.length - source), 0, line);
  }
  const malformed = [
    '{"id": "t-truncated", "prompt": "reverse 5 6',
    '["reverse 1 2 3", "3 2 1"]',
    '{"id": "t-noresponse", "prompt": "reverse 7 8 9"}',
  ];
  for (const line of malformed) trainLines.splice(int(trainLines.length + 1), 0, line);
  const malformedLines = trainLines.flatMap((line, i) => (malformed.includes(line) ? [i + 1] : []));
  const trainPath = path.join(outDir, 'train.jsonl');
  fs.writeFileSync(trainPath, trainLines.join('\n') + '\n');

  // --- extra.csv (Shift_JIS) ---------------------------------------------------------------------------
  // Three spellings that all normalize (NFKC) to "reverse d d d"; every one has full-width characters.
  const spell = (digits: number[], style: number) => {
    const wide = digits.map((d) => FULLWIDTH_DIGITS[d]);
    if (style === 0) return `reverse ${wide.join(' ')}`;
    if (style === 1) return `${FULLWIDTH_REVERSE} ${wide.join(' ')}`;
    return `reverse${IDEOGRAPHIC_SPACE}${wide.join(IDEOGRAPHIC_SPACE)}`;
  };
  const csvRows: Buffer[] = Array.from({ length: csvRecords }, (_, i) => {
    const digits = freshList();
    return sjis(`j${String(i + 1).padStart(4, '0')},${spell(digits, int(3))},${reversal(digits)}\r\n`);
  });
  const wrongColumns = sjis(`j-extra-column,reverse ４ ５ ６,6 5 4,oops\r\n`);
  // 0xFF is not a Shift_JIS byte in any position, so the decoder must replace it.
  const invalidBytes = Buffer.concat([sjis('j-bad-bytes,reverse １ '), Buffer.from([0xff]), sjis(' ３,3 ? 1\r\n')]);
  csvRows.splice(1 + int(csvRows.length - 1), 0, wrongColumns);
  csvRows.splice(1 + int(csvRows.length - 1), 0, invalidBytes);
  // Row numbers count the header as row 1.
  const extraPath = path.join(outDir, 'extra.csv');
  fs.writeFileSync(extraPath, Buffer.concat([sjis('id,prompt,response\r\n'), ...csvRows]));

  // --- preferences.jsonl -------------------------------------------------------------------------------
  const pairs: string[] = [];
  for (let i = 0; i < preferencePairs; i++) {
    // A list of one repeated digit reads the same in every order, so no wrong answer can be built from it.
    const digits = freshList((d) => d.some((x) => x !== d[0]));
    const chosen = reversal(digits);
    let rejected = digits.join(' ');
    // The unreversed list of a palindrome is the right answer; use the swap then.
    if (int(2) === 0 || rejected === chosen) {
      const reversed = [...digits].reverse();
      const swappable = reversed.flatMap((d, j) => (j + 1 < reversed.length && d !== reversed[j + 1] ? [j] : []));
      const j = swappable[int(swappable.length)];
      [reversed[j], reversed[j + 1]] = [reversed[j + 1], reversed[j]];
      rejected = reversed.join(' ');
    }
    pairs.push(JSON.stringify({ prompt: `reverse ${digits.join(' ')}`, chosen, rejected }));
  }
  const preferencesPath = path.join(outDir, 'preferences.jsonl');
  fs.writeFileSync(preferencesPath, pairs.join('\n') + '\n');

  return {
    outDir,
    seed,
    train: {
      path: trainPath,
      lines: trainLines.length,
      records,
      malformedLines,
      duplicates: DUPLICATES,
      controlChars: 4,
      extraWhitespace: 4,
      emails: 1,
      phones: 1,
    },
    extra: {
      path: extraPath,
      rows: csvRows.length,
      records: csvRecords,
      wrongColumnRows: [csvRows.indexOf(wrongColumns) + 2],
      invalidByteRows: [csvRows.indexOf(invalidBytes) + 2],
    },
    preferences: { path: preferencesPath, pairs: preferencePairs },
    totals: {
      inputRows: trainLines.length + csvRows.length,
      wellFormed: records + csvRecords,
      malformed: malformed.length + 2,
      duplicates: DUPLICATES,
    },
  };
}

function sjis(text: string): Buffer {
  return iconv.encode(text, 'shift_jis');
}

function main(argv: string[]): void {
  let outDir = DEMO_DATA_DIR;
  const options: GenerateOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--records' || arg === '--seed') {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value)) throw new Error(`${arg} needs an integer`);
      if (arg === '--records') options.records = value;
      else options.seed = value;
    } else if (arg.startsWith('-')) {
      throw new Error(`unknown option ${arg}; usage: generate.ts [OUT_DIR] [--records N] [--seed N]`);
    } else {
      outDir = path.resolve(arg);
    }
  }
  const s = generateDemoData(outDir, options);
  console.log(
    `wrote ${path.relative(process.cwd(), s.outDir) || '.'}: train.jsonl ${s.train.lines} lines, extra.csv ${s.extra.rows} rows ` +
      `(Shift_JIS), preferences.jsonl ${s.preferences.pairs} pairs; ${s.totals.malformed} malformed and ` +
      `${s.totals.duplicates} duplicate records planted on purpose`,
  );
}

if (require.main === module) main(process.argv.slice(2));
