/**
 * The data benchmarks' input: JSONL generated on disk from a seeded generator, chat-like turns of 150–600
 * characters with some full-width text, e-mail addresses, control characters and 2% exact duplicates, so every
 * clean rule has work to do. Streams, so a 1 GB corpus costs no memory.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import { prng } from '@tempered/examples';

export async function generateCorpus(file: string, targetBytes: number): Promise<{ bytes: number; lines: number }> {
  const random = prng(1);
  const words = ['the', 'model', 'answer', 'question', 'data', 'train', 'reverse', 'digits', 'ｆｕｌｌ', '日本語', 'naïve', 'write', 'a', 'short', 'poem', 'about', 'rain'];
  const sentence = (n: number) => Array.from({ length: n }, () => words[Math.floor(random() * words.length)]).join(' ');
  const out = fs.createWriteStream(file);
  let bytes = 0;
  let lines = 0;
  let batch: string[] = [];
  const recent: string[] = [];
  while (bytes < targetBytes) {
    let line: string;
    if (recent.length > 0 && random() < 0.02) line = recent[Math.floor(random() * recent.length)];
    else {
      const extra = random() < 0.05 ? ` mail me at user${lines}@example.com` : random() < 0.05 ? ' \u0007bell\u0000' : '';
      line = JSON.stringify({ prompt: `${lines}: ${sentence(10 + Math.floor(random() * 40))}${extra}`, response: sentence(15 + Math.floor(random() * 60)) });
      if (recent.length < 1000) recent.push(line);
      else recent[Math.floor(random() * 1000)] = line;
    }
    batch.push(line);
    bytes += Buffer.byteLength(line) + 1;
    lines++;
    if (batch.length === 2000) {
      if (!out.write(batch.join('\n') + '\n')) await once(out, 'drain');
      batch = [];
    }
  }
  out.end(batch.length ? batch.join('\n') + '\n' : '');
  await once(out, 'close');
  return { bytes, lines };
}

