/**
 * A strict reader of the Prometheus text format 0.0.4, for tests: every line must be a HELP, a TYPE
 * or a sample, samples must follow their family's TYPE, and label values are unescaped.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  help: string;
  type: string;
  readonly samples: Sample[];
}

const SAMPLE_SUFFIXES = ['_bucket', '_sum', '_count'];

function unescapeHelp(text: string): string {
  return text.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

function parseLabels(text: string, line: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 0;
  if (text[i] !== '{') return { labels, rest: text };
  i++;
  while (text[i] !== '}') {
    const nameMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i));
    if (nameMatch === null) throw new Error(`bad label name in: ${line}`);
    const name = nameMatch[0];
    i += name.length;
    if (text.slice(i, i + 2) !== '="') throw new Error(`expected =" in: ${line}`);
    i += 2;
    let value = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === '\n') throw new Error(`raw newline in label value: ${line}`);
      if (c === '"') break;
      if (c === '\\') {
        const next = text[i + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new Error(`bad escape \\${next ?? ''} in: ${line}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    i++;
    if (name in labels) throw new Error(`duplicate label ${name} in: ${line}`);
    labels[name] = value;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`expected , or } in: ${line}`);
  }
  return { labels, rest: text.slice(i + 1) };
}

function parseValue(text: string, line: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text)) throw new Error(`bad value ${text} in: ${line}`);
  return Number(text);
}

export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  let current: Family | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (help !== null) {
      const name = help[1]!;
      if (families.has(name)) throw new Error(`second HELP for ${name}`);
      current = { name, help: unescapeHelp(help[2]!), type: '', samples: [] };
      families.set(name, current);
      continue;
    }
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      if (current === undefined || current.name !== type[1] || current.type !== '' || current.samples.length > 0) throw new Error(`TYPE out of place: ${line}`);
      current.type = type[2]!;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(line);
    if (sample === null || line.startsWith('#')) throw new Error(`unparseable line: ${JSON.stringify(line)}`);
    const name = sample[1]!;
    const { labels, rest } = parseLabels(sample[2]!, line);
    if (!rest.startsWith(' ')) throw new Error(`expected a space before the value: ${line}`);
    const value = parseValue(rest.slice(1), line);
    const family = current;
    if (family === undefined || family.type === '') throw new Error(`sample before TYPE: ${line}`);
    const allowed = family.type === 'histogram' ? SAMPLE_SUFFIXES.map((s) => family.name + s) : [family.name];
    if (!allowed.includes(name)) throw new Error(`sample ${name} does not belong to family ${family.name}`);
    family.samples.push({ name, labels, value });
  }
  return families;
}
