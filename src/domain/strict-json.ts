/**
 * A strict JSON reader for security-relevant documents (policy.json, signature payloads).
 * Unlike `JSON.parse` it reports duplicate keys (which `JSON.parse` silently resolves to the last
 * one), keeps number text (so "integer" can be checked the way Go's json.Number does), represents
 * objects as Maps (no prototype keys), and helps callers reject unknown keys. Error texts follow
 * containers/image `signature/internal/json.go`. Pure; throws only PullguardError('INVALID_ARGUMENT').
 */
import { PullguardError } from './errors.js';

/** A JSON number, kept as its source text. */
export class JsonNumber {
  constructor(readonly text: string) {}
  get value(): number {
    return Number(this.text);
  }
  /** Go `json.Number.Int64()` semantics: decimal digits only, within the int64 safe range we support. */
  isSafeInteger(): boolean {
    return /^-?(?:0|[1-9][0-9]*)$/.test(this.text) && Number.isSafeInteger(this.value);
  }
}

export type JsonValue = null | boolean | string | JsonNumber | readonly JsonValue[] | JsonObject;
export type JsonObject = ReadonlyMap<string, JsonValue>;

const MAX_DEPTH = 256;

export class StrictJsonError extends PullguardError<'INVALID_ARGUMENT'> {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return value instanceof Map;
}

/** Go `%#v`-like rendering of a JSON value, for `JSON object expected, got …`. */
export function describeJsonValue(value: JsonValue): string {
  if (value === null) return '<nil>';
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value instanceof JsonNumber) return value.text;
  if (Array.isArray(value)) return "'['";
  return "'{'";
}

interface ParseOptions {
  /** Collect duplicate keys here (first value wins) instead of throwing on the first one. */
  readonly duplicates?: string[];
}

/**
 * Parses one JSON document. Throws StrictJsonError on syntax errors, on data after the top-level
 * value (`Unexpected data after JSON object`) and on duplicate keys (`Duplicate key "<k>"`) unless
 * `options.duplicates` collects them.
 */
export function parseStrictJson(text: string, options: ParseOptions = {}): JsonValue {
  const parser = new Parser(text, options.duplicates);
  parser.skipWhitespace();
  const value = parser.value(0);
  parser.skipWhitespace();
  if (parser.pos !== text.length) throw new StrictJsonError('Unexpected data after JSON object');
  return value;
}

/** Decodes UTF-8 (invalid sequences become U+FFFD, as Go does) and parses strictly. */
export function parseStrictJsonBytes(bytes: Uint8Array, options: ParseOptions = {}): JsonValue {
  return parseStrictJson(new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(bytes), options);
}

class Parser {
  pos = 0;
  constructor(
    private readonly text: string,
    private readonly duplicates: string[] | undefined,
  ) {}

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.pos++;
      else break;
    }
  }

  private fail(context: string): never {
    if (this.pos >= this.text.length) throw new StrictJsonError('unexpected end of JSON input');
    const ch = this.text[this.pos] as string;
    const shown = ch === "'" ? "'\\''" : /[\x20-\x7e]/.test(ch) ? `'${ch}'` : JSON.stringify(ch);
    throw new StrictJsonError(`invalid character ${shown} ${context}`);
  }

  value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) throw new StrictJsonError(`exceeded max depth of ${MAX_DEPTH}`);
    const t = this.text;
    const c = t[this.pos];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail('looking for beginning of value');
    }
  }

  private literal<T extends JsonValue>(word: string, value: T): T {
    for (let i = 0; i < word.length; i++) {
      if (this.text[this.pos] !== word[i]) this.fail(`in literal ${word} (expecting '${word[i]}')`);
      this.pos++;
    }
    return value;
  }

  private number(): JsonNumber {
    const match = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(this.text.slice(this.pos, this.pos + 1024));
    if (match === null || match[0] === '-') {
      this.pos += match?.[0].length ?? 0;
      this.fail('in numeric literal');
    }
    this.pos += match[0].length;
    return new JsonNumber(match[0]);
  }

  private string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = '';
    let start = this.pos;
    for (;;) {
      if (this.pos >= t.length) throw new StrictJsonError('unexpected end of JSON input');
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail('in string literal');
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(start, this.pos);
      this.pos++;
      const e = t[this.pos];
      const simple: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e !== undefined && e in simple) {
        out += simple[e];
        this.pos++;
      } else if (e === 'u') {
        const hex = t.slice(this.pos + 1, this.pos + 5);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
          this.pos++;
          this.fail('in \\u hexadecimal character escape');
        }
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 5;
      } else {
        this.fail('in string escape code');
      }
      start = this.pos;
    }
  }

  private array(depth: number): JsonValue[] {
    this.pos++;
    const out: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      out.push(this.value(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c === ']') {
        this.pos++;
        return out;
      } else this.fail('after array element');
    }
  }

  private object(depth: number): Map<string, JsonValue> {
    this.pos++;
    const out = new Map<string, JsonValue>();
    this.skipWhitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') this.fail('looking for beginning of object key string');
      const key = this.string();
      this.skipWhitespace();
      if (this.text[this.pos] !== ':') this.fail('after object key');
      this.pos++;
      this.skipWhitespace();
      const value = this.value(depth + 1);
      if (out.has(key)) {
        if (this.duplicates === undefined) throw new StrictJsonError(`Duplicate key ${JSON.stringify(key)}`);
        this.duplicates.push(key);
      } else {
        out.set(key, value);
      }
      this.skipWhitespace();
      const c = this.text[this.pos];
      if (c === ',') this.pos++;
      else if (c === '}') {
        this.pos++;
        return out;
      } else this.fail('after object key:value pair');
    }
  }
}

/**
 * Checks that `value` is an object whose keys are all in `known`, and that every key of
 * `required` is present. Returns the problems in upstream wording (empty when fine).
 */
export function objectKeyProblems(value: JsonValue, known: readonly string[], required: readonly string[] = []): string[] {
  if (!isJsonObject(value)) return [`JSON object expected, got ${describeJsonValue(value)}`];
  const problems: string[] = [];
  for (const key of value.keys()) {
    if (!known.includes(key)) problems.push(`Unknown key ${JSON.stringify(key)}`);
  }
  for (const key of required) {
    if (!value.has(key)) problems.push(`Key ${JSON.stringify(key)} missing in a JSON object`);
  }
  return problems;
}

/** Converts a strict JSON value to plain JS (objects become null-prototype records). */
export function toPlainJson(value: JsonValue): unknown {
  if (value instanceof JsonNumber) return value.value;
  if (Array.isArray(value)) return value.map(toPlainJson);
  if (isJsonObject(value)) {
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const [k, v] of value) out[k] = toPlainJson(v);
    return out;
  }
  return value;
}

export function isStrictJsonError(err: unknown): err is StrictJsonError {
  return err instanceof StrictJsonError;
}
